"""The state arrays of one policy's replay: their fields, the codes stored in them, and
the hash map that finds a table's slot.  Every kernel module imports its names from here.

The state lives in a handful of arrays that :mod:`replay.engine` allocates and grows:

``ps``  int64 [proc, PS_*]     per-process counters (one row per pid)
``pf``  float64 [proc]         time integral of VmPTE (bytes x ns)
``vm``  int64 [proc, vma, N_VM] each process's VMAs sorted by start: start, end, VF_* flags,
                               file key, pgoff base (VM_*)
``hk``/``hv`` int64 [pow2]     open-addressing hash: table key -> slot (levels 0-2), or
                               refault marker key -> free time (level 3)
``sl``  int64 [slot, SL_*]     page tables (PTE, PMD and PUD) as pool slots
``pg``  int8 [slot * 512]      PTE entries of PTE-level slots: E_NONE / E_ZERO / E_ANON / E_FILE
``fs``  int64 [slot]           stack of free slots
``g``   int64 [G_* | ef rows]  global scalars (clock cursors, counts of invisible effects), then
                               the ef rows: page-table effects per (event, process), N_EF each,
                               sparse, never drained during a replay (an empty table's slot
                               points at its emptier's row).  Not an array of their own: every
                               array argument of a non-inlined call costs ~30 ns (measured),
                               and the effects reach nearly every function
``dq``  int64 [n, 3]           FIFO of PTE tables waiting to be freed (policy delayed)
``ts``  int64 [row, TS_*]      timeseries rows produced so far
``oc``  int64 [row, OC_*]      occupancy snapshot rows (per process and 1 GiB region)

The constants are module globals, so numba compiles them into every kernel that reads them
(replay/jit.py's cache key covers this file: it holds njit functions).
"""
import numpy as np

from ptreplay.replay.jit import njit

# Event kinds (engine maps events.kind strings to these codes).
K_FAULT, K_MMAP, K_MUNMAP, K_MREMAP, K_BRK, K_MPROTECT, K_MADVISE = 0, 1, 2, 3, 4, 5, 6
K_FORK, K_CLONE, K_EXEC, K_EXIT = 7, 8, 9, 10
K_SNAP_VMA, K_SNAP_PAGES, K_SNAP_TABLES, K_SNAP_BRK = 11, 12, 13, 14   # attach-mode start state (replay.snapshot)
KIND_CODES = {"fault": 0, "mmap": 1, "munmap": 2, "mremap": 3, "brk": 4, "mprotect": 5,
              "madvise": 6, "fork": 7, "clone": 8, "exec": 9, "exit": 10,
              "snapshot_vma": 11, "snapshot_pages": 12, "snapshot_tables": 13, "snapshot_brk": 14}

# Policies.
POL_NONE, POL_PT_RECLAIM, POL_REFCOUNT, POL_SCAN, POL_DELAYED, POL_ALL_LEVELS = 0, 1, 2, 3, 4, 5

# prm: policy parameters.
PR_POLICY, PR_TICK, PR_SCAN, PR_HOLD, PR_THP, PR_TOP, PR_FAST, PR_SNAP_EVERY, PR_SNAP_END, PR_TS_TICKS, \
    PR_THP_ENDS = range(11)
N_PRM = 11                  # PR_FAST: 1 = batched fast path for faults, 0 = generic path only
#                             PR_SNAP_EVERY: occupancy snapshot at ticks T with (T / tick) % it == 0 (0: none)
#                             PR_SNAP_END: 1 = occupancy snapshot at the trace end (finish)
#                             PR_TS_TICKS: 1 = a tick row for every live process; 0 = only if it changed
#                             PR_THP_ENDS: 1 = the trace marks THP faults' ends (EC_ENDED): a THP
#                               write fault without one fell back to 4 KiB pages
# Error-code bit the replayer sets on a fault whose end the trace has (events dur_ns > 0: the
# kernel mapped a huge page there; pipeline/events/fault_ends.py).  x86 defines bits 0-15 and 31.
EC_ENDED = 1 << 20
THP_NEVER, THP_MADVISE, THP_ALWAYS = 0, 1, 2

# ps: per-process fields.
(PS_STARTED, PS_ALIVE, PS_START, PS_END, PS_LAST, PS_NVMA, PS_GEN, PS_BRK, PS_VIRT, PS_ANON,
 PS_FILE, PS_PTE, PS_PMD, PS_PUD, PS_EMPTY, PS_PEAK_VIRT, PS_PEAK_RSS, PS_PEAK_VMPTE,
 PS_FIN_VIRT, PS_FIN_RSS, PS_FIN_VMPTE, PS_FIN_IDEAL, PS_FIN_EMPTY, PS_ALLOC, PS_FREED,
 PS_REFAULTS, PS_SCAN, PS_ATOMICS, PS_EVENTS, PS_PEND_START, PS_PEND_END, PS_INHERITED,
 PS_LIVE_AT, PS_LIVE_POS, PS_PEND_AT, PS_ROW_VIRT, PS_ROW_ANON, PS_ROW_FILE, PS_ROW_PTE, PS_ROW_PMD,
 PS_ROW_PUD, PS_ROW_EMPTY, PS_KNOWN) = range(43)
N_PS = 43                   # PS_INHERITED: inherited empty tables the start snapshot added (replay.snapshot)
#                             PS_LIVE_AT/PS_PEND_AT: columns used as lists, not per-process fields: row i
#                             holds the i-th live process (i < G_NLIVE; PS_LIVE_POS is p's place there)
#                             and the i-th process with a start/end row due (i < G_NPENDP)
#                             PS_ROW_*: the values of p's latest timeseries row (emit_row)
#                             PS_KNOWN: 1 = every VMA of the mm is known (it started from a snapshot, or
#                             forked from such a process): a fault in a hole is SIGSEGV or stack growth

# sl: slot fields.
SL_KEY, SL_USED, SL_HUGE, SL_SINCE, SL_PROC, SL_LEVEL, SL_SERIAL, SL_IDX, SL_EROW, SL_ESINCE = range(10)
N_SL = 10                   # SL_EROW/SL_ESINCE: PTE table empty since SL_ESINCE, emptied by the event
#                             whose ef row is SL_EROW (-1: not empty); SL_SINCE is the delayed policy's

# g: global scalars.
(G_HCOUNT, G_SHW, G_FSTOP, G_NOW, G_NEXT_TICK, G_NEXT_SCAN, G_DIRTY, G_QHEAD, G_QTAIL, G_NROWS,
 G_INIT, G_NLIVE, G_NPEND, G_OUTSIDE, G_POPULATE, G_SERIAL, G_LIVE_SLOTS, G_AFTER_EXIT,
 G_IMPLICIT, G_BRK_UNKNOWN, G_BEYOND_TOP, G_VMA_ID, G_CUR_ROW, G_CUR_T, G_CUR_KIND, G_NEF, G_NOC,
 G_OVERFLOW, G_SNAP_SHORT, G_NPENDP, G_SEGV) = range(31)
N_G = 31                    # G_CUR_*: the event being applied (input row, time, kind; row -1 inside timers)
#                             G_NEF/G_NOC: ef/oc rows used; G_OVERFLOW: rows that found no room (a bug)
#                             G_SNAP_SHORT: tables a start snapshot's pages needed beyond the kernel's VmPTE
#                             G_NLIVE/G_NPENDP: lengths of the PS_LIVE_AT/PS_PEND_AT lists; G_NPEND: rows due
#                             G_SEGV: faults the kernel answers with SIGSEGV/EFAULT (faults.bad_area)

# ts: timeseries row fields.
(TS_PROC, TS_T, TS_VIRT, TS_RSS, TS_ANON, TS_FILE, TS_VMPTE, TS_PTE, TS_PMD, TS_PUD,
 TS_EMPTY) = range(11)
N_TS = 11

# ef rows (in g after the N_G scalars, see ef_at): per-event page-table effects, one row per
# (event, process) with any; append-only: an emptied table's slot keeps its row index until the
# table is refilled or freed.
EF_ROW, EF_PROC, EF_T, EF_KIND, EF_ALLOC, EF_UPPER, EF_EMPTIED, EF_FREED, EF_EMPTY_NS = range(9)
N_EF = 9
EF_PER_EVENT = 4            # ef rows one event may add (its process, a fork child): capacity_needed's margin

# oc: occupancy snapshot rows, one per (process, 1 GiB region with a live PTE table) per snapshot.
OC_PROC, OC_T, OC_REGION, OC_PTE, OC_EMPTY, OC_LIVE, OC_FULL = range(7)
N_OC = 7

# vm columns: start, end, VF_* flags, then what VMA merging needs of a file mapping
# (is_mergeable_vma: the same struct file; can_vma_merge_before/after: contiguous vm_pgoff).
# VM_FILE: 0 = none (private anonymous, heap, implicit, snapshot VMAs), fd + 1 for a file mmap
# (the fd stands for its open file), -(mmap id) for a shared anonymous mmap (its own shmem file).
# VM_PGOFF_BASE: vm_pgoff - start >> 12 in pages, so splits keep it and two neighbours' pgoffs
# are contiguous iff their bases are equal.
VM_FILE, VM_PGOFF_BASE = 3, 4
N_VM = 5

# VMA flags.
VF_ANON, VF_SHARED, VF_WRITE, VF_HUGE, VF_NOHUGE = 1, 2, 4, 8, 16
VF_DONTFORK, VF_WIPEONFORK, VF_ANON_VMA, VF_LOCKED, VF_IMPLICIT, VF_HEAP = 32, 64, 128, 256, 512, 1024
VF_READ, VF_EXEC, VF_NORESERVE = 2048, 4096, 8192
VF_MOVED = 16384             # moved by mremap: its vm_pgoff is no longer its address >> 12 (vma.vma_mergeable)
VF_GROWSDOWN = 32768         # a stack (MAP_GROWSDOWN, smaps gd): a fault in the hole below grows it
VF_PROT_KNOWN = 65536        # VF_READ/WRITE/EXEC are known (an mmap or mprotect gave them), so faults.access_error applies
VF_PROT = VF_READ | VF_WRITE | VF_EXEC
INHERIT_TOP_IDX = (1 << 35) - 1   # inherited empty tables (replay.snapshot) take PTE-table indices down from here
INHERIT_FLOOR_IDX = 1 << 34      # ... and never below this (no address reaches them); occupancy leaves them out
ORIGIN_SHIFT = 20           # flags bits 20+: id of the mmap a VMA came from (stands for its anon_vma)
VF_LOW = (1 << ORIGIN_SHIFT) - 1

# Table levels as typed (non-literal) ints: numba compiles one specialization
# of a jitted function per distinct literal argument, these share one.
LV_PTE, LV_PMD, LV_PUD = np.int64(0), np.int64(1), np.int64(2)

# populate modes (see populate), typed like the levels.
POP_VMA, POP_READ, POP_WRITE = np.int64(0), np.int64(1), np.int64(2)

# PTE entry kinds.
E_NONE, E_ZERO, E_ANON, E_FILE = 0, 1, 2, 3

# run_events stop codes.
NEED_NONE, NEED_SLOTS, NEED_HASH, NEED_VMAS, NEED_ROWS, NEED_QUEUE, NEED_EFFECTS, NEED_OCC = range(8)

PAGE = 4096
PMD_SIZE = 1 << 21          # one PTE table maps 2 MiB
PUD_SIZE = 1 << 30          # one PMD table maps 1 GiB
P4D_SIZE = 1 << 39          # one PUD table maps 512 GiB
NO_CEILING = 1 << 57        # free_pgd_range's ceiling 0 ("no limit")
REFAULT_NS = 1_000_000_000  # a re-allocation within 1 s of a free is a refault
FAULT_AROUND_PAGES = 16     # fault_around_bytes 64 KiB
MARKER = 3                  # hash level tag of refault markers


# ----------------------------------------------------------------------------- hash map

@njit(inline="always")
def _home(key, mask):
    x = key * np.int64(-7046029254386353131)
    x ^= x >> 29
    return x & mask


@njit(inline="always")
def ht_get(hk, hv, key):
    """Value stored for `key`, or -1."""
    mask = hk.shape[0] - 1
    i = _home(key, mask)
    while True:
        k = hk[i]
        if k == key:
            return hv[i]
        if k == -1:
            return -1
        i = (i + 1) & mask


@njit
def ht_put(hk, hv, g, key, val):
    mask = hk.shape[0] - 1
    i = _home(key, mask)
    while True:
        k = hk[i]
        if k == key:
            hv[i] = val
            return
        if k == -1:
            hk[i] = key
            hv[i] = val
            g[G_HCOUNT] += 1
            return
        i = (i + 1) & mask


@njit
def ht_del(hk, hv, g, key):
    """Linear-probing delete with backward shift (no tombstones)."""
    mask = hk.shape[0] - 1
    i = _home(key, mask)
    while hk[i] != key:
        if hk[i] == -1:
            return
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if hk[j] == -1:
            break
        h = _home(hk[j], mask)
        if i <= j:
            stays = i < h <= j
        else:
            stays = h > i or h <= j
        if stays:
            continue
        hk[i] = hk[j]
        hv[i] = hv[j]
        i = j
    hk[i] = -1
    g[G_HCOUNT] -= 1


@njit
def rehash(hk, hv, new_cap, now_ns):
    """Copy a hash map into one of `new_cap` buckets, dropping markers older than 1 s.

    See docs/MODEL.md#refault."""
    nk = np.full(new_cap, -1, np.int64)
    nv = np.zeros(new_cap, np.int64)
    mask = new_cap - 1
    count = 0
    for i in range(hk.shape[0]):
        k = hk[i]
        if k == -1:
            continue
        if (k >> 61) == MARKER and now_ns - hv[i] >= REFAULT_NS:
            continue
        j = _home(k, mask)
        while nk[j] != -1:
            j = (j + 1) & mask
        nk[j] = k
        nv[j] = hv[i]
        count += 1
    return nk, nv, count


@njit(inline="always")
def tkey(level, p, idx):
    """Hash key of the level-`level` table (0 PTE, 1 PMD, 2 PUD) of process p at index idx."""
    return (np.int64(level) << 61) | (np.int64(p) << 35) | idx


@njit
def mkey(p, gen, idx):
    """Hash key of the refault marker of a 2 MiB region (per mm generation).

    See docs/MODEL.md#refault."""
    return (np.int64(MARKER) << 61) | (np.int64(gen & 63) << 55) | (np.int64(p) << 35) | idx


# ----------------------------------------------------------------------------- addresses

@njit
def page_up(x):
    return (x + PAGE - 1) & ~(PAGE - 1)
