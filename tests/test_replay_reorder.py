"""A fork row that comes after rows of its child (reordered or hostile input).

sched_process_fork fires before the child can run, so the replayer applies such a fork just
before the child's first row: the child starts there as a copy of its parent and its own rows
follow in the inherited VMAs; the late fork row is dropped and counted
(metadata counts.forks_after_child_events, one warning line).  Expected values are worked out
from the construction below, not taken from a replay.
"""
from __future__ import annotations

import logging

import pytest

from ptreplay.replay import synth
from ptreplay.replay.engine import ReplayOptions, replay

KB4, MB = 4096, 1 << 20
B = 1 << 39  # 512 GiB aligned: the parent's first fault allocates a PUD, a PMD and a PTE table


def rows(fork_t: int) -> list[dict]:
    """Parent 100: a 4 MiB anonymous mmap, write faults on 4 pages of its first 2 MiB and one of
    its second (PUD + PMD + 2 PTE tables, 5 pages).  Child 101: a write fault on a page the parent
    wrote (present in the copy: nothing new) and one on a fresh page of the first table (+1 page).
    The fork of 100 -> 101 is at fork_t."""
    r = [dict(kind="mmap", addr=B, len=4 * MB, prot=3, flags=0x22, fd=-1, ret=B, t_ns=1000)]
    r += [dict(kind="fault", addr=B + i * KB4, error_code=6, t_ns=2000 + i) for i in range(4)]
    r += [dict(kind="fault", addr=B + 2 * MB, error_code=6, t_ns=2100)]
    child = [dict(kind="fault", pid=101, addr=B + KB4, error_code=6, t_ns=3000),
             dict(kind="fault", pid=101, addr=B + 4 * KB4, error_code=6, t_ns=3500)]
    fork = [dict(kind="fork", child_pid=101, t_ns=fork_t)]
    return r + (fork + child if fork_t <= 3000 else child + fork) + [dict(kind="munmap", addr=B, len=0, t_ns=5000)]


def summary(table, **kw):
    res = replay(table, ReplayOptions(policies="none,pt_reclaim", thp="never", **kw),
                 capture=synth.capture_meta("t"))
    return {(r["pid"], r["policy"]): r for r in res.summary.to_pylist()}, res.metadata["counts"]


@pytest.mark.parametrize("batch_rows", [1 << 18, 2])  # fork, child rows and the plan's rows across batches
def test_fork_after_child_events_starts_the_child_as_a_copy_at_its_first_event(batch_rows, caplog):
    with caplog.at_level(logging.WARNING, logger="ptreplay.replay"):
        got, counts = summary(synth.events_table(rows(fork_t=4000)), batch_rows=batch_rows)
    child = got[(101, "none")]
    assert child["start_ns"] == 3000                       # at its first event, not at the late fork row
    assert child["final_virt_bytes"] == 4 * MB             # the inherited mmap (old behaviour: 8 KiB implicit)
    assert child["final_rss_bytes"] == 6 * KB4             # the parent's 5 pages + its own new one
    assert child["final_vmpte_bytes"] == 4 * KB4           # PUD + PMD + 2 PTE copied (old: 3 tables)
    assert child["events"] == 3                            # the fork and its two faults
    parent = got[(100, "none")]
    assert parent["final_vmpte_bytes"] == 4 * KB4 and parent["final_rss_bytes"] == 5 * KB4
    assert parent["events"] == 8                           # mmap, 5 faults, the fork, the empty munmap
    assert counts["forks_after_child_events"] == 1
    assert counts["events_after_exit_ignored"] == 0
    assert counts["faults_outside_known_vmas"] == 0 and counts["implicit_vmas_created"] == 0
    assert sum("forks came after events of their child" in r.getMessage() for r in caplog.records) == 1


def test_the_moved_fork_equals_a_fork_in_order_at_the_child_first_event():
    late, _ = summary(synth.events_table(rows(fork_t=4000)))
    in_order, counts = summary(synth.events_table(rows(fork_t=3000)))
    assert counts["forks_after_child_events"] == 0
    assert late == in_order
