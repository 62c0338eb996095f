"""Normalization rules on small hand-built raw record streams.

These streams are synthetic (written here, field by field) to pin one rule
each; the real captures in data/ exercise the same code through the readers
in test_ingest.py.
"""
import pyarrow as pa
import pytest

from ptreplay.pipeline.formats import RAW
from ptreplay.pipeline.events.normalize import Normalizer
from ptreplay.schemas import EVENTS, conform

NEG_ENOMEM = (1 << 64) - 12


def raw(rows):
    """rows: (t_ns, pid, tid, event, {a0..a5, ret, comm}) -> RAW table with seq = position."""
    cols = {f.name: [] for f in RAW}
    for seq, (t, pid, tid, event, kw) in enumerate(rows):
        cols["t_ns"].append(t)
        cols["pid"].append(pid)
        cols["tid"].append(tid)
        cols["cpu"].append(0)
        cols["event"].append(event)
        for k in ("a0", "a1", "a2", "a3", "a4", "a5"):
            cols[k].append(kw.get(k, 0))
        cols["ret"].append(kw.get("ret", 0))
        cols["comm"].append(kw.get("comm"))
        cols["seq"].append(seq)
    return pa.table(cols, schema=RAW)


def run(*batches, levels=4, **options):
    n = Normalizer(paging_levels=levels, **options)
    out = [n.push(raw(b)) for b in batches] + [n.finish()]
    t = pa.concat_tables(out)
    conform(t, EVENTS)
    return t.to_pylist(), n.stats


def test_mmap_pair_takes_result_address_exit_time_and_duration():
    rows, _ = run([
        (100, 7, 7, "sys_enter_mmap", dict(a0=0, a1=0x200000, a2=3, a3=0x22, a4=(1 << 64) - 1, a5=0)),
        (150, 7, 7, "sys_exit_mmap", dict(ret=0x7F0000000000)),
    ])
    (e,) = rows
    assert e["kind"] == "mmap" and e["t_ns"] == 150 and e["dur_ns"] == 50
    assert e["addr"] == 0x7F0000000000 and e["len"] == 0x200000 and e["prot"] == 3
    assert e["flags"] == 0x22 and e["fd"] == -1 and not e["failed"] and not e["unfinished"]


def test_failed_call_is_kept_and_marked():
    rows, _ = run([
        (1, 7, 7, "sys_enter_mmap", dict(a1=1 << 50, a2=3, a3=0x22)),
        (2, 7, 7, "sys_exit_mmap", dict(ret=-12)),
    ])
    assert rows[0]["failed"] and rows[0]["ret"] == -12


def test_lost_exit_and_orphan_exit():
    rows, stats = run([
        (1, 7, 7, "sys_exit_munmap", dict(ret=0)),                 # began before the capture: dropped
        (2, 7, 7, "sys_enter_madvise", dict(a0=0x1000, a1=0x1000, a2=4)),
        (3, 7, 7, "sys_enter_munmap", dict(a0=0x5000, a1=0x1000)),  # madvise's exit was lost
        (4, 7, 7, "sys_exit_munmap", dict(ret=0)),
    ])
    assert [(r["kind"], r["unfinished"]) for r in rows] == [("madvise", True), ("munmap", False)]
    assert rows[0]["advice"] == 4 and rows[0]["t_ns"] == 2
    assert stats.orphan_exits_dropped == 1 and stats.lost_exit_syscalls == 1


def test_pair_split_across_batches_and_open_call_at_end():
    rows, stats = run(
        [(1, 7, 7, "sys_enter_madvise", dict(a0=0x1000, a1=0x2000, a2=4)),
         (2, 7, 8, "sys_enter_munmap", dict(a0=0x9000, a1=0x1000))],
        [(3, 7, 7, "sys_exit_madvise", dict(ret=0))],
    )
    assert [(r["kind"], r["tid"], r["t_ns"], r["unfinished"]) for r in rows] == [
        ("madvise", 7, 3, False), ("munmap", 8, 3, True)]  # open at the end: stamped with the last time
    assert stats.unfinished_syscalls == 1 and stats.time_clamped_rows == 1


def test_faults_kernel_addresses_dropped_kernel_mode_kept():
    rows, stats = run([
        (1, 7, 7, "page_fault_user", dict(a0=0x7F0000001234, a1=0x401000, a2=6)),
        (2, 7, 7, "page_fault_kernel", dict(a0=0x55D7C3DFC078, a1=0, a2=2)),
        (3, 7, 7, "page_fault_kernel", dict(a0=0xFFFF888000001000, a1=0, a2=0)),
    ])
    assert [(r["addr"], r["user_mode"], r["error_code"]) for r in rows] == [
        (0x7F0000001234, True, 6), (0x55D7C3DFC078, False, 2)]
    assert stats.kernel_address_faults_dropped == 1


def test_five_level_paging_keeps_high_user_addresses():
    rows, _ = run([(1, 7, 7, "page_fault_user", dict(a0=1 << 50, a2=6))], levels=5)
    assert rows[0]["addr"] == 1 << 50


def test_unknown_pid_filled_from_perf_fork_and_guessed_otherwise():
    rows, stats = run([
        (1, 7, 7, "perf_fork", dict(a0=7, a1=9, a2=7, a3=7)),      # tid 9 is a thread of 7
        (2, -1, 9, "page_fault_user", dict(a0=0x1000, a2=6)),
        (3, -1, 11, "page_fault_user", dict(a0=0x1000, a2=6)),     # never introduced
    ])
    assert [(r["pid"], r["tid"]) for r in rows] == [(7, 9), (11, 11)]
    assert stats.assumed_tgid_rows == 1


def test_fork_versus_clone_and_exit_after_last_thread():
    rows, _ = run([
        (1, 7, 7, "perf_fork", dict(a0=7, a1=8, a2=7, a3=7)),
        (2, 7, 7, "sched_process_fork", dict(a0=8, comm="worker")),   # thread (perf says tgid 7)
        (3, 7, 7, "sched_process_fork", dict(a0=20, comm="child")),   # new process
        (4, 7, 8, "sched_process_exit", dict(comm="worker")),
        (5, 7, 7, "sched_process_exit", dict(comm="main")),
    ])
    kinds = [(r["kind"], r["pid"], r["child_pid"]) for r in rows]
    assert kinds == [("clone", 7, 8), ("fork", 7, 20), ("exit", 7, -1)]
    assert rows[-1]["t_ns"] == 5


def test_exec_moves_before_loader_faults_of_the_same_thread():
    rows, _ = run([
        (1, 7, 7, "page_fault_user", dict(a0=0x1000, a2=6)),          # old mm
        (2, 7, 7, "page_fault_kernel", dict(a0=0x55D700000078, a2=2)),  # elf_load in the new mm
        (3, 9, 9, "page_fault_user", dict(a0=0x2000, a2=6)),          # another process
        (4, 7, 7, "page_fault_kernel", dict(a0=0x7FD000000110, a2=2)),
        (5, 7, 7, "sched_process_exec", dict(a0=7, a1=7, comm="/tmp/seed_loop")),
    ])
    assert [(r["kind"], r["pid"], r["t_ns"]) for r in rows] == [
        ("fault", 7, 1), ("exec", 7, 2), ("fault", 7, 2), ("fault", 9, 3), ("fault", 7, 4)]
    assert rows[1]["comm"] == "seed_loop"  # the command name, as the kernel's comm


def test_exit_mmap_is_the_teardown_when_present():
    rows, _ = run([
        (1, 7, 7, "sys_enter_exit_group", {}),
        (2, 7, 7, "exit_mmap", {}),
        (3, 7, 7, "sched_process_exit", dict(comm="x")),
    ])
    assert [(r["kind"], r["t_ns"]) for r in rows] == [("exit", 2)]


# A kernel whose sched_process_exit fires before exit_mm() (its format has group_dead), as here.
EXIT_FIRST = {"exit_traced_first": True}
FOREIGN = [                                                     # as workloads/mm_holder.c makes it
    (1, 9, 9, "sched_process_fork", dict(a0=20, comm="child")),
    (2, 9, 9, "sched_process_fork", dict(a0=10, comm="reader")),  # a thread (perf FORK says so)
    (3, 20, 20, "sched_process_exit", dict(comm="child")),      # killed while 9's reader holds its mm
    (4, 9, 10, "exit_mmap", {}),                                 # the child's teardown, in the reader
    (5, 9, 10, "sched_process_exit", dict(comm="reader")),
    (6, 9, 9, "page_fault_user", dict(a0=0x1000, a2=6)),         # the parent goes on
]


def test_exit_mmap_run_by_a_live_task_is_another_process_teardown():
    """exit_mmap in a task that has not exited: the last reference to the mm of a process that
    ended (a /proc reader's mmput).  It is no exit of the reader's process, and the one exit of
    the batch moves there; on kernels that trace the exit after exit_mm() nothing changes."""
    rows, stats = run([FOREIGN[0], (1, 9, 9, "perf_fork", dict(a0=9, a1=10, a2=9, a3=9)), *FOREIGN[1:]],
                      reader_meta=EXIT_FIRST)
    assert [(r["kind"], r["pid"], r["t_ns"]) for r in rows if r["kind"] != "clone"] == [
        ("fork", 9, 1), ("exit", 20, 4), ("fault", 9, 6)]
    assert stats.foreign_exit_mmaps == 1
    rows, _ = run([FOREIGN[0], (1, 9, 9, "perf_fork", dict(a0=9, a1=10, a2=9, a3=9)), *FOREIGN[1:]],
                  reader_meta=EXIT_FIRST, whole_host=True)     # exits at exit_mmap only: the child's is here
    assert [(r["kind"], r["pid"], r["t_ns"]) for r in rows if r["kind"] in ("exit", "fault")] == [
        ("exit", 20, 4), ("fault", 9, 6)]
    rows, stats = run(FOREIGN)                                   # an older kernel: as before
    assert ("exit", 9) in [(r["kind"], r["pid"]) for r in rows] and stats.foreign_exit_mmaps == 0


def test_own_exit_mmap_after_the_exit_ends_the_process():
    """The kernel here traces sched_process_exit before exit_mm(): under -a a process's own
    exit_mmap comes after its last thread's exit, in that thread, and ends it there."""
    rows, stats = run([
        (1, 7, 7, "page_fault_user", dict(a0=0x1000, a2=6)),
        (2, 7, 7, "sched_process_exit", dict(comm="x")),
        (3, 7, 7, "exit_mmap", {}),
    ], reader_meta=EXIT_FIRST, whole_host=True)
    assert [(r["kind"], r["t_ns"]) for r in rows] == [("fault", 1), ("exit", 3)] and stats.foreign_exit_mmaps == 0
    rows, _ = run([(1, 7, 7, "page_fault_user", dict(a0=0x1000, a2=6)), (2, 7, 7, "sched_process_exit", {})],
                  [(3, 7, 7, "exit_mmap", {})], reader_meta=EXIT_FIRST, whole_host=True)   # in the next batch
    assert [(r["kind"], r["t_ns"]) for r in rows] == [("fault", 1), ("exit", 3)]


def test_exit_group_alone_exits_at_end():
    rows, _ = run([
        (1, 7, 7, "page_fault_user", dict(a0=0x1000, a2=6)),
        (2, 7, 7, "sys_enter_exit_group", {}),
    ])
    assert [(r["kind"], r["t_ns"]) for r in rows] == [("fault", 1), ("exit", 2)]


@pytest.mark.parametrize("bad", ["addr", "kind"])
def test_conform_rejects_events_missing_a_column(bad):
    rows, _ = run([(1, 7, 7, "page_fault_user", dict(a0=0x1000, a2=6))])
    t = pa.Table.from_pylist(rows, schema=EVENTS.schema).drop_columns([bad])
    from ptreplay.schemas.errors import SchemaError
    with pytest.raises(SchemaError, match=f"missing column\\(s\\) {bad}"):
        conform(t, EVENTS)
