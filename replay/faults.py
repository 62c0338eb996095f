"""Page faults, one at a time (handle_mm_fault: anonymous, file, THP, fault-around), and
GUP population (populate_vma_page_range), which faults every page of a range.  Runs of
faults take the batched kernels.fast_fault_run instead, with the same effect.
"""
from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (E_ANON, E_FILE, E_NONE, E_ZERO, EC_ENDED, FAULT_AROUND_PAGES, G_POPULATE, G_SEGV, LV_PTE,
                                    PAGE, PMD_SIZE, PR_THP, PR_THP_ENDS, PS_KNOWN, PS_NVMA, PS_VIRT, SL_HUGE, THP_MADVISE,
                                    THP_NEVER, VF_ANON, VF_ANON_VMA, VF_GROWSDOWN, VF_HUGE, VF_NOHUGE, VF_PROT,
                                    VF_PROT_KNOWN,
                                    VF_SHARED, VF_WRITE, ht_get, tkey)
from ptreplay.replay.vma import implicit_vma, vma_find, vma_first_after
from ptreplay.replay.pagetables import pte_set, pte_walk_alloc, tbl_alloc, upper_walk_alloc


MMAP_MIN_ADDR = 65536             # /proc/sys/vm/mmap_min_addr (Debian's default)
STACK_GUARD_GAP = 256 * PAGE      # stack_guard_gap: a stack grows no closer than this to the VMA below


@njit(inline="always")
def access_error(vflags, ecode):
    """x86 access_error: a write needs VM_WRITE; a read of a present page (protection
    fault) or of a VMA with no access at all is refused.  Allowed when the error code
    (ecode < 0) or the VMA's protection (no mmap or mprotect gave it) is not known.

    See docs/MODEL.md#bad-area."""
    if ecode < 0 or (vflags & VF_PROT_KNOWN) == 0:
        return False
    if (ecode & 2) != 0:
        return (vflags & VF_WRITE) == 0
    return (ecode & 1) != 0 or (vflags & VF_PROT) == 0


@njit
def hole_fault(vm, ps, g, p, addr):
    """A fault in a hole of a fully known mm (do_user_addr_fault: find_vma, then
    expand_stack for a VM_GROWSDOWN VMA above, else bad_area -> SIGSEGV/EFAULT).
    The stack grows down to the faulting page unless that comes within
    stack_guard_gap of an accessible VMA below (expand_downwards); VmSize grows
    with it (vm_stat_account).  Returns the VMA index, or -1 (nothing mapped).

    See docs/MODEL.md#bad-area."""
    page = addr & ~(PAGE - 1)
    i = vma_first_after(vm, ps, p, page)
    if i >= ps[p, PS_NVMA] or (vm[p, i, 2] & VF_GROWSDOWN) == 0 or page < MMAP_MIN_ADDR:
        g[G_SEGV] += 1
        return -1
    if i > 0 and (vm[p, i - 1, 2] & VF_GROWSDOWN) == 0 and (vm[p, i - 1, 2] & VF_PROT) != 0 \
            and page - vm[p, i - 1, 1] < STACK_GUARD_GAP:
        g[G_SEGV] += 1
        return -1
    ps[p, PS_VIRT] += vm[p, i, 0] - page
    vm[p, i, 0] = page
    return i


@njit
def thp_allowed(prm, vstart, vend, vflags, addr):
    """Anonymous private VMA, THP mode permits it, aligned 2 MiB inside the VMA
    (thp_vma_allowable_order + do_huge_pmd_anonymous_page's range check).

    See docs/MODEL.md#thp-fault."""
    mode = prm[PR_THP]
    if mode == THP_NEVER:
        return False
    if (vflags & VF_ANON) == 0 or (vflags & VF_SHARED) != 0 or (vflags & VF_NOHUGE) != 0:
        return False
    if mode == THP_MADVISE and (vflags & VF_HUGE) == 0:
        return False
    h = addr & ~(PMD_SIZE - 1)
    return h >= vstart and h + PMD_SIZE <= vend


@njit
def thp_fell_back(prm, write, ecode):
    """A THP write fault the kernel gave no huge page (allocation or memcg charge failed:
    VM_FAULT_FALLBACK, then a 4 KiB page): the trace marks THP faults' ends (PR_THP_ENDS) and
    this one has none (EC_ENDED).  Read faults map the huge zero page, which has no end mark.

    See docs/MODEL.md#thp-fault."""
    return write and prm[PR_THP_ENDS] != 0 and (ecode & EC_ENDED) == 0


@njit
def fault_around(ps, sl, pg, g, prm, s, addr, vstart, vend):
    """do_fault_around: map up to 16 page-cache pages around a file read fault.

    Window start = max(16-aligned index, VMA start), end = start + 16, clamped
    to the PTE table and the VMA end (assumes the pages are in the page cache).

    See docs/MODEL.md#fault-around.
    """
    pte_off = (addr >> 12) & 511
    vma_off = (addr - vstart) >> 12
    vma_pages = (vend - vstart) >> 12
    from_pte = max(pte_off & ~(FAULT_AROUND_PAGES - 1), pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + FAULT_AROUND_PAGES, 512, pte_off + vma_pages - vma_off)
    for i in range(from_pte, to_pte):
        if pg[s * 512 + i] == E_NONE:
            pte_set(ps, sl, pg, g, prm, s, i, E_FILE)


@njit
def do_fault(ps, vm, hk, hv, sl, pg, fs, g, prm, p, addr, ecode, t):
    """One page fault on a user address (handle_mm_fault).

    Missing tables are allocated on the way down.  Anonymous: read -> shared
    zero page (do_anonymous_page), write -> new page, write on the zero page
    -> new page (do_wp_page).  THP: a PMD leaf plus a deposited PTE table
    (do_huge_pmd_anonymous_page; read -> huge zero page).  File read ->
    fault-around; private file write -> anonymous COW page (do_cow_fault);
    shared write -> one file page (do_shared_fault); shmem -> one page.
    A fault the kernel refuses (access_error, or a hole of a known mm that no
    stack grows into) maps nothing (see hole_fault).

    See docs/MODEL.md#fault-anon.
    """
    vi = vma_find(vm, ps, p, addr)
    if vi < 0:
        if ps[p, PS_KNOWN] != 0:
            vi = hole_fault(vm, ps, g, p, addr)
            if vi < 0:
                return
        else:
            vi = implicit_vma(vm, ps, g, p, addr)
    if access_error(vm[p, vi, 2], ecode):
        g[G_SEGV] += 1
        return
    write = ecode >= 0 and (ecode & 2) != 0
    vstart = vm[p, vi, 0]
    vend = vm[p, vi, 1]
    vflags = vm[p, vi, 2]
    anon = (vflags & VF_ANON) != 0
    shared = (vflags & VF_SHARED) != 0
    idx = addr >> 21
    s = ht_get(hk, hv, tkey(0, p, idx))
    if s < 0 and thp_allowed(prm, vstart, vend, vflags, addr) and not thp_fell_back(prm, write, ecode):
        upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t)
        s = tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, idx, t)
        e = E_ANON if write else E_ZERO
        for i in range(512):
            pte_set(ps, sl, pg, g, prm, s, i, e)
        sl[s, SL_HUGE] = 1
        vm[p, vi, 2] = vflags | VF_ANON_VMA
        return
    if s < 0:
        s = pte_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, addr, t)
    i = (addr >> 12) & 511
    old = pg[s * 512 + i]
    if old == E_NONE:
        if anon and not shared:
            e = E_ANON if write else E_ZERO
        elif anon or (write and shared):
            e = E_FILE
        elif write:
            e = E_ANON
        else:
            fault_around(ps, sl, pg, g, prm, s, addr, vstart, vend)
            return
    elif write and old == E_ZERO and sl[s, SL_HUGE] == 1 and not thp_fell_back(prm, write, ecode):
        for k in range(512):  # do_huge_zero_wp_pmd: a huge page in place, the deposit kept
            pte_set(ps, sl, pg, g, prm, s, k, E_ANON)
        vm[p, vi, 2] = vflags | VF_ANON_VMA
        return
    elif write and (old == E_ZERO or (old == E_FILE and not shared)):
        sl[s, SL_HUGE] = 0  # no huge page for a write on the huge zero page: split (one 4 KiB page)
        e = E_ANON
    else:
        return
    pte_set(ps, sl, pg, g, prm, s, i, e)
    if e == E_ANON:
        vm[p, vi, 2] = vflags | VF_ANON_VMA


@njit
def populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, mode, t):
    """GUP population (populate_vma_page_range / faultin_page), invisible to
    the page-fault tracepoints: fault every page of [lo, hi) in each VMA.

    mode 0: write if the VMA is private and writable (MAP_POPULATE, mlock);
    1: read (MADV_POPULATE_READ); 2: write (MADV_POPULATE_WRITE).

    See docs/MODEL.md#populate.
    """
    g[G_POPULATE] += 1
    a = lo
    while a < hi:
        vi = vma_find(vm, ps, p, a)
        if vi < 0:
            j = vma_first_after(vm, ps, p, a)
            if j >= ps[p, PS_NVMA] or vm[p, j, 0] >= hi:
                return
            a = vm[p, j, 0]
            continue
        vflags = vm[p, vi, 2]
        if mode == 0:
            write = (vflags & VF_WRITE) != 0 and (vflags & VF_SHARED) == 0
        else:
            write = mode == 2
        end = min(hi, vm[p, vi, 1])
        while a < end:
            # GUP's huge pages end inside the syscall, unmarked: taken as allocated
            do_fault(ps, vm, hk, hv, sl, pg, fs, g, prm, p, a, (2 | EC_ENDED) if write else -1, t)
            a += PAGE
