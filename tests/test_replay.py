"""Replay engine and kernels on small hand-built SYNTHETIC event streams.

Every stream here is made up (replay.synth.events_table), not captured; the
expected values follow KERNEL.md's rules.  Each case also checks the compiled
engine against tests/reference_replay.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from ptreplay.schemas.errors import OutputExistsError, SchemaError, UsageError
from ptreplay.replay import synth
from ptreplay.replay.engine import REPLAY_KEY, ReplayOptions, replay, replay_to_dir
from ptreplay.replay.policies import parse_policies, parse_policy
from reference_replay import run_reference

KB4 = 4096
MB, GB = 1 << 20, 1 << 30
B = 1 << 39  # 512 GiB aligned base: PUD, PMD and PTE tables all fresh
ALL = "none,pt_reclaim,refcount,scan:1s,delayed:100ms,all_levels"


def ev(rows, **kw):
    return synth.events_table(rows, **kw)


def mmap(addr, length, flags=0x22, prot=3, fd=-1, **kw):
    return dict(kind="mmap", addr=addr, len=length, prot=prot, flags=flags, fd=fd, ret=addr, **kw)


def fault(addr, write=True, **kw):
    return dict(kind="fault", addr=addr, error_code=6 if write else 4, **kw)


def madv(addr, length, advice=4, **kw):
    return dict(kind="madvise", addr=addr, len=length, advice=advice, **kw)


def touch_range(addr, length, write=True):
    return [fault(a, write) for a in range(addr, addr + length, KB4)]


def run(table, policies="none", thp="never", thp_ends=False, **kw):
    """Engine summary rows by policy (for pid 100) after checking against the reference.
    `thp_ends`: the capture's trace marks THP faults' ends (record.json fault_ends)."""
    capture = synth.capture_meta("t")
    if thp_ends:
        capture["fault_ends"] = {"tracepoint": "memcg:count_memcg_events", "counter": "thp_fault_alloc", "item": 81}
    res = replay(table, ReplayOptions(policies=policies, thp=thp, **kw), capture=capture)
    check_reference(table, res, thp, kw.get("interval_ns", 10_000_000), kw.get("timeseries", "changes") == "ticks",
                    thp_ends)
    return {r["policy"]: r for r in res.summary.to_pylist() if r["pid"] == 100}, res


def check_reference(table, res, thp, interval_ns=10_000_000, ts_ticks=False, thp_ends=False):
    by_policy = {}
    for r in res.summary.to_pylist():
        by_policy.setdefault(r["policy"], {})[r["pid"]] = r
    ts = res.timeseries.to_pylist()
    for spec in by_policy:
        name, _, arg = spec.partition(":")
        kw = {}
        if name == "scan":
            kw["scan_ns"] = parse_policy(spec).arg_ns
        if name == "delayed":
            kw["hold_ns"] = parse_policy(spec).arg_ns
        ref_ts, ref_sum = run_reference(table, name, thp=thp, interval_ns=interval_ns, ts_ticks=ts_ticks,
                                        thp_ends=thp_ends, **kw)
        got_ts = [{k: v for k, v in r.items() if k not in ("trace_id", "policy")} for r in ts if r["policy"] == spec]
        assert got_ts == ref_ts, f"timeseries differ for {spec}"
        assert set(by_policy[spec]) == set(ref_sum)
        for pid, want in ref_sum.items():
            got = by_policy[spec][pid]
            for k, v in want.items():
                assert got[k] == pytest.approx(v, rel=1e-12), f"{spec} pid {pid} {k}: {got[k]} != {v}"


# ----------------------------------------------------------------------------- faults

def test_zero_page_then_write():
    s, _ = run(ev([mmap(B, 4 * MB), fault(B, write=False), fault(B + KB4, write=False)]))
    assert s["none"]["final_vmpte_bytes"] == 3 * KB4   # PUD + PMD + PTE: first touch of 512 GiB
    assert s["none"]["final_rss_bytes"] == 0           # zero page: no RSS
    s, _ = run(ev([mmap(B, 4 * MB), fault(B, write=False), dict(kind="fault", addr=B, error_code=7)]))
    assert s["none"]["final_rss_bytes"] == KB4
    assert s["none"]["pte_tables_allocated"] == 1


def test_fault_around_file_read():
    file_map = mmap(B + 8 * KB4, 64 * KB4, flags=0x02, prot=1, fd=3)
    s, _ = run(ev([file_map, fault(B + 20 * KB4, write=False)]))
    # window: 16-aligned block [16, 32) of the table, inside the VMA [8, 72)
    assert s["none"]["final_rss_bytes"] == 16 * KB4
    s, _ = run(ev([file_map, fault(B + 9 * KB4, write=False)]))
    # VMA starts mid-block: window starts at the VMA start (8) and spans 16 pages
    assert s["none"]["final_rss_bytes"] == 16 * KB4
    rw_map = mmap(B + 8 * KB4, 64 * KB4, flags=0x02, prot=3, fd=3)
    s, _ = run(ev([rw_map, fault(B + 9 * KB4, write=True)]))
    assert s["none"]["final_rss_bytes"] == KB4  # private write: one COW page
    s, _ = run(ev([file_map, fault(B + 9 * KB4, write=True)]))
    # a write to a read-only mapping: access_error, SIGSEGV before handle_mm_fault: nothing mapped
    assert s["none"]["final_rss_bytes"] == 0 and s["none"]["final_vmpte_bytes"] == 0


def test_thp_fault_and_split():
    rows = [mmap(B, 4 * MB), madv(B, 4 * MB, 14), fault(B + 5 * KB4)]
    s, _ = run(ev(rows), thp="madvise")
    assert s["none"]["final_rss_bytes"] == 2 * MB
    assert s["none"]["final_vmpte_bytes"] == 3 * KB4  # deposited PTE table counts
    s, _ = run(ev(rows), thp="never")
    assert s["none"]["final_rss_bytes"] == KB4
    # partial zap splits; full 2 MiB zap frees the deposited table under every policy
    s, _ = run(ev(rows + [madv(B, MB)]), policies=ALL, thp="always")
    assert s["none"]["final_rss_bytes"] == MB and s["none"]["pte_tables_freed"] == 0
    s, _ = run(ev(rows + [madv(B, 2 * MB)]), policies=ALL, thp="always")
    assert all(r["pte_tables_freed"] == 1 for r in s.values())


def test_thp_fault_with_a_traced_end_maps_a_huge_page_and_without_one_falls_back():
    """Where the trace marks THP faults' ends (memcg THP_FAULT_ALLOC, pipeline/events/fault_ends.py,
    dur_ns > 0), a THP write fault without an end got no huge page (VM_FAULT_FALLBACK: one 4 KiB
    page in a PTE table).  A write on the huge zero page maps a huge page in place
    (do_huge_zero_wp_pmd) unless it fell back (split: one page).  Kernel, probes on this machine
    (docs/MODEL.md#thp-fault): write fault on a fresh MADV_HUGEPAGE 2 MiB: RssAnon +2048 kB, VmPTE
    +4 kB (the deposit); read then write: RssAnon +2048 kB, VmPTE unchanged; a 4 KiB fault: +4 kB
    RssAnon and a +4 kB PTE table."""
    head = [mmap(B, 4 * MB), madv(B, 4 * MB, 14)]
    ended = fault(B + 5 * KB4, dur_ns=48_000)
    s, _ = run(ev(head + [ended]), thp="madvise", thp_ends=True)
    assert (s["none"]["final_rss_bytes"], s["none"]["final_vmpte_bytes"]) == (2 * MB, 3 * KB4)
    s, _ = run(ev(head + [fault(B + 5 * KB4)]), thp="madvise", thp_ends=True)
    assert (s["none"]["final_rss_bytes"], s["none"]["final_vmpte_bytes"]) == (KB4, 3 * KB4)
    # a capture without ends (older recordings, text formats): every THP fault got its huge page
    s, _ = run(ev(head + [fault(B + 5 * KB4)]), thp="madvise")
    assert s["none"]["final_rss_bytes"] == 2 * MB
    # the huge zero page, then a write
    zero_then = head + [fault(B + 5 * KB4, write=False)]
    s, _ = run(ev(zero_then + [fault(B + 9 * KB4, dur_ns=50_000)]), thp="madvise", thp_ends=True)
    assert (s["none"]["final_rss_bytes"], s["none"]["final_vmpte_bytes"]) == (2 * MB, 3 * KB4)
    s, _ = run(ev(zero_then + [fault(B + 9 * KB4)]), thp="madvise")
    assert s["none"]["final_rss_bytes"] == 2 * MB
    s, _ = run(ev(zero_then + [fault(B + 9 * KB4)]), thp="madvise", thp_ends=True)
    assert (s["none"]["final_rss_bytes"], s["none"]["final_vmpte_bytes"]) == (KB4, 3 * KB4)
    # then a whole-2 MiB zap frees the deposit (huge page) or the split table (pt_reclaim)
    s, _ = run(ev(zero_then + [fault(B + 9 * KB4, dur_ns=50_000), madv(B, 2 * MB)]), policies=ALL,
               thp="madvise", thp_ends=True)
    assert all(r["pte_tables_freed"] == 1 for r in s.values())


# ----------------------------------------------------------------------------- free_pgtables

def test_free_pgtables_worked_example():
    """KERNEL.md section 3: A=[B,B+1M) X=[B+1M,B+7M) C=[B+7M,B+8M); munmap(X) frees 2 tables."""
    rows = [mmap(B, MB), mmap(B + MB, 6 * MB), mmap(B + 7 * MB, MB)]
    rows += [fault(B), fault(B + 7 * MB)] + [fault(B + MB + i * 2 * MB) for i in range(3)]
    before = run(ev(rows))[0]["none"]["final_vmpte_bytes"]
    assert before == (4 + 1 + 1) * KB4
    s, _ = run(ev(rows + [dict(kind="munmap", addr=B + MB, len=6 * MB)]))
    assert before - s["none"]["final_vmpte_bytes"] == 2 * KB4
    assert s["none"]["pte_tables_freed"] == 2


def test_munmap_everything_frees_pmd_and_pud():
    rows = [mmap(B, 4 * MB), fault(B), fault(B + 2 * MB), dict(kind="munmap", addr=B, len=4 * MB)]
    s, _ = run(ev(rows))
    assert s["none"]["final_vmpte_bytes"] == 0


# ----------------------------------------------------------------------------- mremap, fork

def test_mremap_whole_table_move_vs_pte_move():
    rows = [mmap(B, 2 * MB)] + touch_range(B, 64 * KB4)
    aligned = rows + [dict(kind="mremap", addr=B, len=2 * MB, new_len=2 * MB, flags=1, new_addr=B + GB, ret=B + GB)]
    s, _ = run(ev(aligned))
    # table moved whole; source PMD freed with the old range; new PMD at B+1G
    assert s["none"]["final_vmpte_bytes"] == (1 + 1 + 1) * KB4
    assert s["none"]["pte_tables_allocated"] == 1 and s["none"]["final_rss_bytes"] == 64 * KB4
    unaligned = rows + [dict(kind="mremap", addr=B, len=2 * MB, new_len=2 * MB, flags=1,
                             new_addr=B + GB + 64 * KB4, ret=B + GB + 64 * KB4)]
    s, _ = run(ev(unaligned))
    assert s["none"]["pte_tables_allocated"] == 3  # 2 destination tables by PTE moves
    assert s["none"]["final_rss_bytes"] == 64 * KB4


def test_fork_copies_tables_of_written_vmas_only():
    rows = [mmap(B, 4 * MB), mmap(B + 8 * MB, 2 * MB)] + touch_range(B, 4 * KB4)
    rows += [fault(B + 8 * MB, write=False), madv(B, 4 * KB4), dict(kind="fork", child_pid=101)]
    _, res = run(ev(rows))
    child = [r for r in res.summary.to_pylist() if r["pid"] == 101][0]
    # written VMA: its (now empty) table is copied; read-only-faulted VMA: no anon_vma, not copied
    assert child["final_vmpte_bytes"] == 3 * KB4
    assert child["empty_pte_tables_final"] == 1
    assert child["final_virt_bytes"] == 6 * MB


def mremap(addr, length, new_addr, flags=3, new_len=None):
    """MREMAP_MAYMOVE|MREMAP_FIXED (3) by default; | 4 for MREMAP_DONTUNMAP."""
    new_len = length if new_len is None else new_len
    return dict(kind="mremap", addr=addr, len=length, new_len=new_len, flags=flags, new_addr=new_addr, ret=new_addr)


def child_vmpte(rows):
    _, res = run(ev(rows + [dict(kind="fork", child_pid=101)]))
    return [r for r in res.summary.to_pylist() if r["pid"] == 101][0]["final_vmpte_bytes"]


def test_a_never_faulted_vma_moved_again_merges_like_a_fresh_one():
    """copy_vma (mm/vma.c) gives an anonymous VMA without anon_vma the pgoff of its new address,
    whatever moves it had before; here the DONTUNMAP source of a moved VMA, moved again, then
    joined by a fresh mmap: one VMA, whose anon_vma makes fork copy its read-faulted table too.
    Kernel, probe (this machine, 6.18): parent and child VmPTE +20 kB (PUD, PMD, 3 PTE tables)."""
    rows = [mmap(B, 2 * MB), fault(B), mremap(B, 2 * MB, B + 16 * MB),
            mremap(B + 16 * MB, 2 * MB, B + 32 * MB, flags=7), mremap(B + 16 * MB, 2 * MB, B + 64 * MB),
            fault(B + 64 * MB, write=False), mmap(B + 66 * MB, 2 * MB), fault(B + 66 * MB)]
    assert child_vmpte(rows) == 5 * KB4   # oracle seed 975: the model's child was 8 kB low


def test_mprotect_to_the_same_protection_splits_nothing():
    """mprotect_fixup (mm/mprotect.c) returns before any split when the new flags equal the
    old: a private file mapping mprotected RW in its middle stays one VMA, and one write gives
    the whole of it an anon_vma, so fork copies the read-faulted table too.  Kernel, probe:
    parent and child VmPTE +16 kB (PUD, PMD, 2 PTE tables)."""
    rows = [mmap(B, 4 * MB, flags=0x02, fd=3), dict(kind="mprotect", addr=B + MB, len=2 * MB, prot=3),
            fault(B, write=False), fault(B + 3 * MB)]
    assert child_vmpte(rows) == 4 * KB4   # oracle seed 434: the model's child was 4-8 kB low


def test_mprotect_of_the_middle_changes_only_the_middle():
    """mprotect_fixup splits at both range ends: the tail keeps its write permission
    (a write there maps a page; one in the read-only middle is refused, access_error)."""
    rows = [mmap(B, 4 * MB), dict(kind="mprotect", addr=B + MB, len=2 * MB, prot=1),
            fault(B + 3 * MB), fault(B + 2 * MB), fault(B)]
    s, _ = run(ev(rows))
    assert s["none"]["final_rss_bytes"] == 2 * KB4
@pytest.mark.parametrize("pgoff, copied", [(0, 4), (MB, 3)])
def test_mmap_merges_a_file_mapping_with_its_contiguous_remnant(pgoff, copied):
    """vma_merge_new_range (mm/vma.c): a private mapping of the same file (fd) right below a
    remnant of an earlier one, at the contiguous pgoff, joins it (can_vma_merge_before), taking
    its anon_vma: fork copies the new part's read-faulted table too.  Not contiguous (pgoff
    1 MiB): two VMAs, one table copied.  Kernel, probe: child +16 kB (PUD, PMD, 2 PTE tables),
    +12 kB with pgoff 1 MiB."""
    rows = [mmap(B, 4 * MB, flags=0x02, fd=3), fault(B + 3 * MB), dict(kind="munmap", addr=B, len=2 * MB),
            mmap(B, 2 * MB, flags=0x02, fd=3, pgoff=pgoff), fault(B, write=False)]
    assert child_vmpte(rows) == copied * KB4   # oracle seed 79: the model's child was 4 kB low


@pytest.mark.parametrize("shared_file", [True, False, "moved"])
def test_shared_vmas_merge_so_a_whole_2m_dontneed_frees_the_table(shared_file):
    """Shared VMAs merge too: two MAP_SHARED maps of a file at contiguous offsets (vma_merge_new_range),
    the second mapped far off and moved next to the first by mremap (copy_vma keeps its pgoff), or
    a shared anonymous map split by mprotect and given its protection back (vma_merge_existing_range,
    one shmem file, contiguous pgoff).  One VMA, so a DONTNEED of the whole 2 MiB frees its PTE table
    (pt_reclaim).  Kernel, probe: VmPTE +12 kB before the DONTNEED, +8 kB after it."""
    if shared_file == "moved":   # copy_vma -> vma_merge_new_range at the destination
        rows = [mmap(B, MB, flags=0x01, fd=3), mmap(B + 16 * MB, MB, flags=0x01, fd=3, pgoff=MB),
                fault(B + 16 * MB), mremap(B + 16 * MB, MB, B + MB)]
    elif shared_file:
        rows = [mmap(B, MB, flags=0x01, fd=3), mmap(B + MB, MB, flags=0x01, fd=3, pgoff=MB)]
    else:
        rows = [mmap(B, 2 * MB, flags=0x21), dict(kind="mprotect", addr=B + MB, len=MB, prot=1),
                dict(kind="mprotect", addr=B + MB, len=MB, prot=3)]
    rows += [fault(B), fault(B + MB), madv(B, 2 * MB)]
    s, _ = run(ev(rows), policies="pt_reclaim")
    assert s["pt_reclaim"]["final_vmpte_bytes"] == 2 * KB4
    assert s["pt_reclaim"]["peak_vmpte_bytes"] == 3 * KB4


def test_dontfork_and_wipeonfork():
    rows = [mmap(B, 2 * MB)] + touch_range(B, 2 * KB4)
    for adv, virt in ((10, 0), (18, 2 * MB)):
        _, res = run(ev(rows + [madv(B, 2 * MB, adv), dict(kind="fork", child_pid=101)]))
        child = [r for r in res.summary.to_pylist() if r["pid"] == 101][0]
        assert child["final_vmpte_bytes"] == 0 and child["final_virt_bytes"] == virt


# ----------------------------------------------------------------------------- policies

def seed_rows(split):
    rows = [mmap(B, 4 * MB)] + touch_range(B, 2 * MB)
    step = 2 * MB // split
    return rows + [madv(B + i * step, step) for i in range(split)]


def test_pt_reclaim_full_2m_only_and_refcount_both():
    s1, _ = run(ev(seed_rows(1)), policies=ALL)
    s2, _ = run(ev(seed_rows(2)), policies=ALL)
    assert s1["pt_reclaim"]["final_vmpte_bytes"] == 2 * KB4
    assert s2["pt_reclaim"]["final_vmpte_bytes"] == 3 * KB4
    assert s1["refcount"]["final_vmpte_bytes"] == s2["refcount"]["final_vmpte_bytes"] == 2 * KB4
    assert s1["none"]["final_vmpte_bytes"] == 3 * KB4
    assert s1["all_levels"]["final_vmpte_bytes"] == 0  # PMD and PUD left childless go too
    assert s1["pt_reclaim"]["vmpte_saved_bytes"] == KB4


def test_delayed_reuse_and_expiry():
    rows = seed_rows(1) + [fault(B, t_ns=1_000_000 + 600 * 1000 + 50_000_000)]
    s, _ = run(ev(rows), policies="delayed:100ms")
    assert s["delayed:100ms"]["pte_tables_allocated"] == 1 and s["delayed:100ms"]["refaults"] == 0
    rows = seed_rows(1) + [fault(B, t_ns=1_000_000 + 600 * 1000 + 150_000_000)]
    s, _ = run(ev(rows), policies="delayed:100ms,refcount")
    assert s["delayed:100ms"]["pte_tables_allocated"] == 2 and s["delayed:100ms"]["refaults"] == 1
    assert s["refcount"]["refaults"] == 1


def test_scan_frees_on_next_scan():
    rows = seed_rows(2)
    t_last = 1_000_000 + (len(rows) - 1) * 1000
    before = run(ev(rows + [dict(kind="clone", child_pid=5, t_ns=999_000_000)]), policies="scan:1s")[0]
    assert before["scan:1s"]["final_vmpte_bytes"] == 3 * KB4
    after = run(ev(rows + [dict(kind="clone", child_pid=5, t_ns=1_000_000_000)]), policies="scan:1s")[0]
    assert after["scan:1s"]["final_vmpte_bytes"] == 2 * KB4
    assert after["scan:1s"]["scan_entries"] == 512
    assert t_last < 1_000_000_000


def test_seed_loop_small_scale():
    table = synth.seed_loop(1, 40, 1)
    s, _ = run(table, policies="none,pt_reclaim")
    assert s["none"]["final_vmpte_bytes"] - s["pt_reclaim"]["final_vmpte_bytes"] == 40 * KB4
    assert s["pt_reclaim"]["final_vmpte_bytes"] == 2 * KB4
    s2, _ = run(synth.seed_loop(1, 40, 2), policies="none,pt_reclaim")
    assert s2["none"]["final_vmpte_bytes"] == s2["pt_reclaim"]["final_vmpte_bytes"]


def test_failed_rows_ignored():
    rows = [mmap(B, 4 * MB), fault(B), madv(B, 2 * MB, failed=True), fault(B + 2 * MB, failed=True)]
    s, _ = run(ev(rows), policies=ALL)
    assert s["pt_reclaim"]["final_vmpte_bytes"] == 3 * KB4 and s["none"]["final_rss_bytes"] == KB4
    assert s["none"]["events"] == 2


def test_unfinished_mmap_skipped_madvise_applied():
    rows = [mmap(B, 4 * MB), fault(B), mmap(B + GB, MB, unfinished=True), madv(B, 2 * MB, unfinished=True)]
    s, res = run(ev(rows), policies="pt_reclaim")
    assert s["pt_reclaim"]["final_vmpte_bytes"] == 2 * KB4
    assert res.metadata["counts"]["unfinished_skipped_mmap_mremap_brk"] == 1


def test_fault_outside_known_vma_is_counted():
    s, res = run(ev([fault(B + 5 * KB4), fault(B + 6 * KB4)]))
    assert s["none"]["final_vmpte_bytes"] == 3 * KB4 and s["none"]["final_virt_bytes"] == 2 * KB4
    assert res.metadata["counts"]["faults_outside_known_vmas"] == 2


# ----------------------------------------------------------------------------- kernels on edge inputs

def test_empty_input():
    res = replay(ev([]), ReplayOptions(policies="all"))
    assert res.summary.num_rows == 0 and res.timeseries.num_rows == 0


def test_one_event_and_equal_timestamps():
    s, res = run(ev([fault(B)]), policies=ALL)
    assert s["none"]["final_vmpte_bytes"] == 3 * KB4
    assert res.timeseries.num_rows == 2 * 6  # start and end row per policy
    same_t = [dict(r, t_ns=5_000_000) for r in seed_rows(1)]
    s, _ = run(ev(same_t), policies=ALL)
    assert s["refcount"]["final_vmpte_bytes"] == 2 * KB4 and s["none"]["mean_vmpte_bytes"] == 3 * KB4


def test_timeseries_ticks():
    """timeseries="ticks": a row at every tick for every live process; "changes" (the default):
    a tick row only when the process's values changed since its latest row (same step function)."""
    rows = [mmap(B, 4 * MB, t_ns=5_000_000), fault(B, t_ns=25_000_000), dict(kind="exit", t_ns=41_000_000)]
    _, res = run(ev(rows), policies="none", timeseries="ticks")
    ts = res.timeseries.to_pylist()
    assert [r["t_ns"] for r in ts] == [5_000_000, 10_000_000, 20_000_000, 30_000_000, 40_000_000, 41_000_000]
    assert [r["vmpte_bytes"] for r in ts] == [0, 0, 0, 3 * KB4, 3 * KB4, 0]
    _, res = run(ev(rows), policies="none")
    ts = res.timeseries.to_pylist()
    assert [r["t_ns"] for r in ts] == [5_000_000, 30_000_000, 41_000_000]
    assert [r["vmpte_bytes"] for r in ts] == [0, 3 * KB4, 0]
    with pytest.raises(UsageError, match="timeseries rows"):
        replay(ev(rows), ReplayOptions(timeseries="every"))


def test_unsorted_and_bad_kind_raise_schema_error():
    with pytest.raises(SchemaError, match="backwards"):
        replay(ev([fault(B, t_ns=10), fault(B, t_ns=5)]))
    with pytest.raises(SchemaError, match="unknown event kind"):
        replay(ev([dict(kind="bogus")]))


def test_policy_parsing():
    assert [p.spec for p in parse_policies("all")] == ["none", "pt_reclaim", "refcount", "scan:1s",
                                                       "delayed:100ms", "all_levels"]
    assert parse_policy("scan:500ms").arg_ns == 500_000_000
    for bad in ("bogus", "scan:fast", "none:1s", "delayed:-1s", ""):
        with pytest.raises(UsageError):
            parse_policies(bad)


def test_replay_to_dir_writes_atomically_with_force(tmp_path):
    events = tmp_path / "seed.events.parquet"
    pq.write_table(synth.seed_loop(1, 4, 1), events)
    out = replay_to_dir(events, tmp_path / "out", ReplayOptions(policies="pt_reclaim"))
    summary = pq.read_table(out / "summary.parquet")
    assert summary.column("policy").to_pylist() == ["pt_reclaim"]
    assert summary.column("trace_id").to_pylist() == ["seed"]
    meta = json.loads(pq.read_schema(out / "summary.parquet").metadata[REPLAY_KEY])
    assert meta["policies_run"] == ["none", "pt_reclaim"]
    with pytest.raises(OutputExistsError):
        replay_to_dir(events, tmp_path / "out", ReplayOptions(policies="none"))
    replay_to_dir(events, tmp_path / "out", ReplayOptions(policies="none"), force=True)
    assert pq.read_table(out / "summary.parquet").column("policy").to_pylist() == ["none"]


def test_kernels_are_valid_python_without_jit(tmp_path):
    """The kernels run as plain Python (NUMBA_DISABLE_JIT=1) and give value for value what the
    compiled kernels give: every output table of a random stream under every policy."""
    code = ("import sys, pyarrow.parquet as pq; from ptreplay.replay import synth;"
            "from ptreplay.replay.engine import replay, ReplayOptions;"
            "r = replay(synth.random_stream(3, 40), ReplayOptions(policies='all', thp='always', interval_ns=1000));"
            "[pq.write_table(getattr(r, n), f'{sys.argv[1]}/{n}.parquet') "
            " for n in ('summary', 'timeseries', 'effects', 'occupancy')]")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    compiled = replay(synth.random_stream(3, 40), ReplayOptions(policies="all", thp="always", interval_ns=1000))
    for name in ("summary", "timeseries", "effects", "occupancy"):
        plain = pq.read_table(tmp_path / f"{name}.parquet")
        mine = getattr(compiled, name)
        assert plain.num_rows == mine.num_rows > 0 or name == "occupancy", name
        assert plain.to_pylist() == mine.to_pylist(), name
