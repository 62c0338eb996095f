"""The start state of a process that was already running when the trace began (attach mode).

`ptreplay record -p` reads the target's /proc/PID/maps, its pagemap and its VmPTE just after
perf starts; ingest turns that into three kinds of leading events (schemas.EVENT_KINDS):

``snapshot_vma``     one per VMA of the maps file: the VMA exactly as the kernel had it
``snapshot_pages``   one per run of pages of one class (schemas.SNAP_*): map them, no fault-around
``snapshot_tables``  the kernel's VmPTE at the snapshot: page tables no present or swapped page
                     explains are *inherited empty tables* of unknown location

Inherited tables are empty PTE tables at indices no address reaches (INHERIT_TOP_IDX down),
so every policy treats them as it treats any empty table: `none` and `pt_reclaim` keep them
(no zap can cover them), `refcount`/`all_levels` free them at once, `delayed` after its hold,
`scan` at its first scan; exit frees them with the rest.

See docs/MODEL.md#snapshot.
"""
from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (INHERIT_TOP_IDX, E_ANON, E_FILE, E_ZERO, LV_PTE, ORIGIN_SHIFT, PAGE, PMD_SIZE, PR_TOP, PS_BRK, PS_INHERITED, PS_KNOWN, PS_PMD, PS_PTE, PS_PUD,
                                    SL_HUGE, VF_ANON_VMA, VF_HUGE, VF_NOHUGE, G_VMA_ID, ht_get, tkey)
from ptreplay.replay.vma import vma_find, vma_insert
from ptreplay.replay.pagetables import (pte_set, pte_walk_alloc, refcount_like, release_empty, tbl_alloc,
                                        upper_walk_alloc)
from ptreplay.replay.syscalls import do_munmap, mmap_vma_flags
from ptreplay.schemas import SNAP_ANON, SNAP_FILE, SNAP_HUGE_ZERO, SNAP_THP



@njit
def snap_vma(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, lo, hi, prot, flags, fd, advice, t):
    """One VMA of the start maps, inserted as it is (no merge: the kernel had it apart).

    See docs/MODEL.md#snapshot."""
    ps[p, PS_KNOWN] = 1        # the snapshot lists every VMA: a fault in a hole is the kernel's SIGSEGV
    hi = min(hi, prm[PR_TOP])
    if hi <= lo:
        return
    do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, lo, hi, t)
    vflags = mmap_vma_flags(prot, flags, fd)
    if advice == 14:
        vflags |= VF_HUGE
    elif advice == 15:
        vflags |= VF_NOHUGE
    g[G_VMA_ID] += 1
    vma_insert(vm, ps, p, lo, hi, vflags | (g[G_VMA_ID] << ORIGIN_SHIFT), 0, 0)  # no file key: never merged


@njit
def snap_brk(ps, p, brk):
    """The heap's end: the break as the next brk() call will find it.

    See docs/MODEL.md#snapshot."""
    ps[p, PS_BRK] = brk


@njit
def snap_pages(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, cls, t):
    """Map pages [lo, hi) of one class exactly (the pagemap saw them present or swapped).

    Swapped pages occupy their PTE like the zero page does (a table entry, no RSS). A
    PMD-mapped anonymous THP is a PTE slot marked huge with 512 entries, the model's form of
    the kernel's huge PMD plus its deposited table (do_huge_pmd_anonymous_page).

    See docs/MODEL.md#snapshot."""
    hi = min(hi, prm[PR_TOP])
    if cls == SNAP_THP or cls == SNAP_HUGE_ZERO:
        e = E_ANON if cls == SNAP_THP else E_ZERO
        a = lo & ~(PMD_SIZE - 1)
        while a < hi:
            upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, a, t)
            s = ht_get(hk, hv, tkey(0, p, a >> 21))
            if s < 0:
                s = tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, a >> 21, t)
            for i in range(512):
                pte_set(ps, sl, pg, g, prm, s, i, e)
            sl[s, SL_HUGE] = 1
            _mark_anon(vm, ps, p, a)
            a += PMD_SIZE
        return
    e = E_ANON if cls == SNAP_ANON else E_FILE if cls == SNAP_FILE else E_ZERO
    a = lo
    while a < hi:
        s = pte_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, a, t)
        end = min(hi, (a & ~(PMD_SIZE - 1)) + PMD_SIZE)
        while a < end:
            pte_set(ps, sl, pg, g, prm, s, (a >> 12) & 511, e)
            a += PAGE
        if cls == SNAP_ANON:
            _mark_anon(vm, ps, p, end - PAGE)


@njit(inline="always")
def _mark_anon(vm, ps, p, addr):
    """An anonymous page in a VMA means it has an anon_vma (fork copies its tables)."""
    vi = vma_find(vm, ps, p, addr)
    if vi >= 0:
        vm[p, vi, 2] |= VF_ANON_VMA


@njit
def snap_tables(ps, hk, hv, sl, pg, fs, g, dq, prm, p, vmpte_bytes, t):
    """The kernel's VmPTE at the snapshot: tables beyond those the mapped pages need become
    inherited empty PTE tables, which the policy then treats like any empty table.
    Returns how many tables the kernel held fewer than the model (pages that changed
    during the scan), 0 normally.

    See docs/MODEL.md#snapshot."""
    have = ps[p, PS_PTE] + ps[p, PS_PMD] + ps[p, PS_PUD]
    n = vmpte_bytes // PAGE - have
    if n <= 0:
        return -n
    for k in range(n):
        s = tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, INHERIT_TOP_IDX - ps[p, PS_INHERITED], t)
        ps[p, PS_INHERITED] += 1
        if refcount_like(prm):
            release_empty(ps, hk, hv, sl, pg, fs, g, dq, prm, s, t)
    return 0
