"""The mm syscalls, applied at their traced results: munmap (unmap_vmas + free_pgtables, also
the unmap half of MAP_FIXED, mremap and brk), mmap, madvise, mremap (move_page_tables), brk
and fork (dup_mmap + copy_page_range).  mprotect is vma.do_mprotect; exec and exit are
pagetables.teardown.
"""
import numpy as np

from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (VF_GROWSDOWN, VF_PROT_KNOWN, E_NONE, G_BRK_UNKNOWN, G_VMA_ID, LV_PMD, LV_PTE, LV_PUD, NO_CEILING,
                                    ORIGIN_SHIFT, PAGE, PMD_SIZE, POL_ALL_LEVELS, POL_PT_RECLAIM, POP_READ,
                                    POP_VMA, POP_WRITE, PR_POLICY, PR_TOP, PS_BRK, PS_NVMA, PS_VIRT, SL_HUGE,
                                    SL_IDX, SL_KEY, SL_PROC, SL_USED, VF_ANON, VF_ANON_VMA, VF_DONTFORK, VF_EXEC,
                                    VF_HEAP, VF_HUGE, VF_IMPLICIT, VF_LOCKED, VF_MOVED, VF_NOHUGE, VF_NORESERVE, VF_READ,
                                    VF_LOW, VF_SHARED, VF_WIPEONFORK, VF_WRITE, VM_FILE, VM_PGOFF_BASE, ht_del, ht_get,
                                    ht_put, page_up, tkey)
from ptreplay.replay.vma import (vma_delete_at, vma_find, vma_first_after, vma_insert, vma_merge_around,
                                 vma_set_flags, vma_split)
from ptreplay.replay.pagetables import (free_pgd_range, prune_parents, pte_clear, pte_set, refcount_like,
                                        release_empty, tables_in_range, tbl_alloc, upper_walk_alloc, zap_range)
from ptreplay.replay.faults import populate


@njit
def do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, lo, hi, t):
    """munmap / the unmap half of MAP_FIXED, mremap and brk shrink
    (do_vmi_munmap -> vms_clear_ptes: unmap_vmas then free_pgtables).

    floor = end of the surviving previous VMA, ceiling = start of the surviving
    next VMA; removed VMAs less than 2 MiB apart share one free_pgd_range.

    See docs/MODEL.md#munmap.
    """
    if hi <= lo:
        return
    vma_split(vm, ps, p, lo)
    vma_split(vm, ps, p, hi)
    a = vma_first_after(vm, ps, p, lo)
    b = a
    while b < ps[p, PS_NVMA] and vm[p, b, 0] < hi:
        b += 1
    if a == b:
        return
    floor = vm[p, a - 1, 1] if a > 0 else 0
    ceiling = vm[p, b, 0] if b < ps[p, PS_NVMA] else NO_CEILING
    m = b - a
    starts = np.empty(m, np.int64)
    ends = np.empty(m, np.int64)
    for k in range(m):
        starts[k] = vm[p, a + k, 0]
        ends[k] = vm[p, a + k, 1]
    for k in range(m):
        vma_delete_at(vm, ps, p, a)
        ps[p, PS_VIRT] -= ends[k] - starts[k]
    for k in range(m):
        zap_range(ps, hk, hv, sl, pg, fs, g, dq, prm, p, starts[k], ends[k], False, True, t)
    k = 0
    while k < m:
        start = starts[k]
        while k + 1 < m and starts[k + 1] <= ends[k] + PMD_SIZE:
            k += 1
        nxt = starts[k + 1] if k + 1 < m else ceiling
        free_pgd_range(ps, hk, hv, sl, pg, fs, g, prm, p, start, ends[k], floor, nxt, t)
        k += 1


@njit
def mmap_vma_flags(prot, flags, fd):
    """VF_* bits of a new mapping from mmap's prot, MAP_* flags and fd (calc_vm_prot_bits,
    calc_vm_flag_bits): anonymous, shared, read/write/exec, locked, noreserve, growsdown.

    See docs/MODEL.md#mmap."""
    vflags = 0
    if fd < 0 or (flags & 0x20) != 0:
        vflags |= VF_ANON
    if (flags & 0x01) != 0:
        vflags |= VF_SHARED
    if prot >= 0:
        vflags |= (VF_READ if (prot & 1) != 0 else 0) | (VF_WRITE if (prot & 2) != 0 else 0) | \
            (VF_EXEC if (prot & 4) != 0 else 0) | VF_PROT_KNOWN
    if (flags & 0x2000) != 0:
        vflags |= VF_LOCKED
    if (flags & 0x4000) != 0:
        vflags |= VF_NORESERVE
    if (flags & 0x0100) != 0:
        vflags |= VF_GROWSDOWN
    return vflags


@njit
def mmap_file_key(flags, fd, vma_id):
    """VM_FILE of a new mapping: fd + 1 for a file (the fd stands for its struct file), the
    mmap's own -id for a shared anonymous one (shmem_zero_setup gives each its own file), 0 for
    private anonymous memory.

    See docs/MODEL.md#vma-split-merge."""
    if fd >= 0 and (flags & 0x20) == 0:
        return np.int64(fd) + 1
    if (flags & 0x01) != 0:
        return -vma_id
    return np.int64(0)


@njit
def do_mmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, length, prot, flags, fd, pgoff, t):
    """mmap at its result address (mmap_region): replace what was there
    (MAP_FIXED), add the VMA (merged with its neighbours by vma_merge_new_range: for a file,
    the same file at contiguous pgoff), then populate for MAP_POPULATE / MAP_LOCKED.
    pgoff: the file offset in bytes (do_mmap ignores it for shared anonymous memory: 0).

    See docs/MODEL.md#mmap."""
    lo = addr & ~(PAGE - 1)
    hi = min(page_up(addr + length), prm[PR_TOP])
    if hi <= lo:
        return
    do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, lo, hi, t)
    vflags = mmap_vma_flags(prot, flags, fd)
    g[G_VMA_ID] += 1
    vflags |= g[G_VMA_ID] << ORIGIN_SHIFT
    file = mmap_file_key(flags, fd, g[G_VMA_ID])
    pgoff_pages = (pgoff >> 12) if file > 0 else 0
    vma_insert(vm, ps, p, lo, hi, vflags, file, pgoff_pages - (lo >> 12))
    vma_merge_around(vm, ps, p, lo, hi)
    if (flags & (0x8000 | 0x2000)) != 0 and prot > 0:
        populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, POP_VMA, t)


@njit
def madvise_flag_bits(advice):
    """(set, clear) VMA flag bits of the flag-only advices (madvise_vma_behavior's
    new_flags): DONTFORK/DOFORK, HUGEPAGE/NOHUGEPAGE, WIPEONFORK/KEEPONFORK.

    See docs/MODEL.md#madvise-flags."""
    set_bits = np.int64(0)
    clear_bits = np.int64(0)
    if advice == 10:
        set_bits = VF_DONTFORK
    elif advice == 11:
        clear_bits = VF_DONTFORK
    elif advice == 14:
        set_bits = VF_HUGE
        clear_bits = VF_NOHUGE
    elif advice == 15:
        set_bits = VF_NOHUGE
        clear_bits = VF_HUGE
    elif advice == 18:
        set_bits = VF_WIPEONFORK
    elif advice == 19:
        clear_bits = VF_WIPEONFORK
    return set_bits, clear_bits


@njit
def do_madvise(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, addr, length, advice, t):
    """madvise_vma_behavior per advice (docs/MODEL.md#madvise-dontneed, #madvise-free, #madvise-remove).

    See docs/MODEL.md#madvise-dontneed."""
    lo = addr & ~(PAGE - 1)
    hi = min(page_up(addr + length), prm[PR_TOP])
    if hi <= lo:
        return
    if advice == 4 or advice == 24 or advice == 9:  # DONTNEED, DONTNEED_LOCKED, REMOVE
        reclaim = advice != 9 and prm[PR_POLICY] == POL_PT_RECLAIM
        i = vma_first_after(vm, ps, p, lo)
        while i < ps[p, PS_NVMA] and vm[p, i, 0] < hi:
            a = max(lo, vm[p, i, 0])
            b = min(hi, vm[p, i, 1])
            zap_range(ps, hk, hv, sl, pg, fs, g, dq, prm, p, a, b, reclaim, True, t)
            i += 1
    elif advice in (10, 11, 14, 15, 18, 19):
        set_bits, clear_bits = madvise_flag_bits(advice)
        vma_set_flags(vm, ps, p, lo, hi, set_bits, clear_bits)
    elif advice == 22:
        populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, POP_READ, t)
    elif advice == 23:
        populate(ps, vm, hk, hv, sl, pg, fs, g, prm, p, lo, hi, POP_WRITE, t)


@njit
def move_page_tables(ps, hk, hv, sl, pg, fs, g, dq, prm, p, old, new, length, t):
    """move_page_tables: per extent, move the whole PTE table when the extent
    is an aligned 2 MiB and the destination has no table (move_normal_pmd /
    move_huge_pmd); otherwise allocate the destination table and move the
    PTEs one by one (move_ptes), leaving the source table (empty) behind.

    See docs/MODEL.md#mremap-move-tables."""
    o = old
    n = new
    end = old + length
    while o < end:
        ext = min(((o >> 21) + 1) * PMD_SIZE - o, end - o, ((n >> 21) + 1) * PMD_SIZE - n)
        s = ht_get(hk, hv, tkey(0, p, o >> 21))
        if s >= 0:
            upper_walk_alloc(ps, hk, hv, sl, pg, fs, g, p, n, t)
            d = ht_get(hk, hv, tkey(0, p, n >> 21))
            if ext == PMD_SIZE and d < 0:
                rekey_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, n >> 21, t)
            else:
                sl[s, SL_HUGE] = 0
                if d < 0:
                    d = tbl_alloc(ps, hk, hv, sl, pg, fs, g, p, LV_PTE, n >> 21, t)
                i0 = (o >> 12) & 511
                j0 = (n >> 12) & 511
                for k in range(ext >> 12):
                    e = pte_clear(ps, sl, pg, g, prm, s, i0 + k)
                    if e != E_NONE:
                        pte_set(ps, sl, pg, g, prm, d, j0 + k, e)
                if refcount_like(prm):
                    if sl[s, SL_USED] == 0:
                        release_empty(ps, hk, hv, sl, pg, fs, g, dq, prm, s, t)
                    if sl[d, SL_USED] == 0:
                        release_empty(ps, hk, hv, sl, pg, fs, g, dq, prm, d, t)
        o += ext
        n += ext


@njit
def rekey_pte_table(ps, hk, hv, sl, pg, fs, g, prm, s, new_idx, t):
    """A whole-table move: same table, new PMD entry (no VmPTE change).

    See docs/MODEL.md#mremap-move-tables."""
    p = sl[s, SL_PROC]
    old_idx = sl[s, SL_IDX]
    ht_del(hk, hv, g, sl[s, SL_KEY])
    src_pmd = ht_get(hk, hv, tkey(1, p, old_idx >> 9))
    if src_pmd >= 0:
        sl[src_pmd, SL_USED] -= 1
    key = tkey(0, p, new_idx)
    sl[s, SL_KEY] = key
    sl[s, SL_IDX] = new_idx
    ht_put(hk, hv, g, key, s)
    dst_pmd = ht_get(hk, hv, tkey(1, p, new_idx >> 9))
    if dst_pmd >= 0:
        sl[dst_pmd, SL_USED] += 1
    if prm[PR_POLICY] == POL_ALL_LEVELS:
        prune_parents(ps, hk, hv, sl, pg, fs, g, prm, p, old_idx, t)


@njit
def do_mremap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old, old_len, new_len, flags, new, t):
    """mremap: shrink unmaps the tail; grow in place extends the VMA; a move
    unmaps the target (MREMAP_FIXED), moves the page tables, adds the new VMA,
    then unmaps the old range unless MREMAP_DONTUNMAP (move_vma).  MREMAP_DONTUNMAP of a
    whole VMA drops the old VMA's anon_vma (dontunmap_complete -> unlink_anon_vmas), so
    fork no longer copies its (empty) tables.  copy_vma merges the new VMA with its
    neighbours (vma_merge_new_range); one with an anon_vma keeps its vm_pgoff, so VF_MOVED and
    a fresh id keep it from merging with unmoved ones (vma_mergeable); an anonymous VMA never
    faulted takes the new address as pgoff and merges like a fresh mmap, whatever moves it had
    before (its VF_MOVED is dropped: copy_vma, mm/vma.c).

    See docs/MODEL.md#mremap."""
    old = old & ~(PAGE - 1)
    old_len = page_up(old_len)
    new_len = page_up(new_len)
    top = prm[PR_TOP]
    if new == old:
        if new_len < old_len:
            do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old + new_len, old + old_len, t)
        elif new_len > old_len:
            vi = vma_find(vm, ps, p, old + old_len - 1)
            flags_v = vm[p, vi, 2] if vi >= 0 else VF_ANON | VF_WRITE
            file_v = vm[p, vi, VM_FILE] if vi >= 0 else 0
            base_v = vm[p, vi, VM_PGOFF_BASE] if vi >= 0 else 0
            do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old + old_len, min(old + new_len, top), t)
            if vi >= 0 and vm[p, vi, 1] == old + old_len:
                vm[p, vi, 1] = min(old + new_len, top)
                ps[p, PS_VIRT] += min(old + new_len, top) - (old + old_len)
            else:
                vma_insert(vm, ps, p, old + old_len, min(old + new_len, top), flags_v, file_v, base_v)
        return
    if new_len < old_len:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old + new_len, old + old_len, t)
        old_len = new_len
    vi = vma_find(vm, ps, p, old)
    vflags = vm[p, vi, 2] if vi >= 0 else VF_ANON | VF_WRITE
    file = vm[p, vi, VM_FILE] if vi >= 0 else 0
    base = vm[p, vi, VM_PGOFF_BASE] if vi >= 0 else 0
    whole = vi >= 0 and vm[p, vi, 0] == old and vm[p, vi, 1] == old + old_len
    new_end = min(new + new_len, top)
    do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, new, new_end, t)
    move_page_tables(ps, hk, hv, sl, pg, fs, g, dq, prm, p, old, new, min(old_len, new_end - new), t)
    nflags = vflags & ~VF_IMPLICIT
    if file != 0:                     # a file's pages keep their pgoff: vm_pgoff + (old - vm_start) >> 12
        base += (old >> 12) - (new >> 12)
    elif (vflags & VF_ANON_VMA) != 0:  # copy_vma keeps vm_pgoff: merges only with its own pieces
        g[G_VMA_ID] += 1
        nflags = (nflags & VF_LOW) | VF_MOVED | (g[G_VMA_ID] << ORIGIN_SHIFT)
    elif (vflags & VF_ANON) != 0:     # never faulted: copy_vma sets vm_pgoff = new >> 12, even after moves
        nflags &= ~VF_MOVED
    vma_insert(vm, ps, p, new, new_end, nflags, file, base)
    vma_merge_around(vm, ps, p, new, new_end)
    if (flags & 4) == 0:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old, old + old_len, t)
    elif whole:
        vi = vma_find(vm, ps, p, old)
        if vi >= 0:
            g[G_VMA_ID] += 1
            vm[p, vi, 2] = (vm[p, vi, 2] & VF_LOW & ~VF_ANON_VMA) | (g[G_VMA_ID] << ORIGIN_SHIFT)


@njit
def do_brk(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, req, ret, t):
    """brk: grow extends the heap VMA (do_brk_flags), shrink unmaps the tail.
    brk(0) and the first call of an attached process only learn the break.

    See docs/MODEL.md#brk."""
    cur = ps[p, PS_BRK]
    if req == 0 or cur < 0:
        if cur < 0 and req != 0:
            g[G_BRK_UNKNOWN] += 1
        ps[p, PS_BRK] = ret
        return
    old_end = page_up(cur)
    new_end = page_up(ret)
    if new_end > old_end:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, old_end, new_end, t)
        i = vma_find(vm, ps, p, old_end - 1)
        if i >= 0 and vm[p, i, 1] == old_end and (vm[p, i, 2] & VF_HEAP) != 0:
            vm[p, i, 1] = new_end
            ps[p, PS_VIRT] += new_end - old_end
        else:
            vma_insert(vm, ps, p, old_end, new_end, VF_ANON | VF_WRITE | VF_HEAP, 0, 0)
    elif new_end < old_end:
        do_munmap(ps, pf, vm, hk, hv, sl, pg, fs, g, dq, prm, p, new_end, old_end, t)
    ps[p, PS_BRK] = ret


@njit
def do_fork(ps, pf, vm, hk, hv, sl, pg, fs, g, prm, p, c, t):
    """dup_mmap + copy_page_range: the child gets the parent's VMAs (not
    MADV_DONTFORK; WIPEONFORK without anon_vma); tables are copied only for
    VMAs with an anon_vma (vma_needs_copy), one child table for every parent
    table in the VMA's range (copy_pmd_range allocates even for empty ones).

    The child inherits the break (dup_mm copies the whole mm_struct, mm->brk included), so
    its brk calls move the heap like the parent's.

    See docs/MODEL.md#fork."""
    ps[c, PS_BRK] = ps[p, PS_BRK]
    n = ps[p, PS_NVMA]
    for i in range(n):
        f = vm[p, i, 2]
        if (f & VF_DONTFORK) != 0:
            continue
        cf = f & ~VF_LOCKED
        if (f & VF_WIPEONFORK) != 0:
            cf &= ~VF_ANON_VMA
        vma_insert(vm, ps, c, vm[p, i, 0], vm[p, i, 1], cf, vm[p, i, VM_FILE], vm[p, i, VM_PGOFF_BASE])
    for i in range(n):
        f = vm[p, i, 2]
        if (f & (VF_DONTFORK | VF_WIPEONFORK)) != 0 or (f & VF_ANON_VMA) == 0:
            continue
        vs = vm[p, i, 0]
        ve = vm[p, i, 1]
        for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PUD, vs >> 39, (ve - 1) >> 39):
            if ht_get(hk, hv, tkey(2, c, sl[s, SL_IDX])) < 0:
                tbl_alloc(ps, hk, hv, sl, pg, fs, g, c, LV_PUD, sl[s, SL_IDX], t)
        for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PMD, vs >> 30, (ve - 1) >> 30):
            if ht_get(hk, hv, tkey(1, c, sl[s, SL_IDX])) < 0:
                tbl_alloc(ps, hk, hv, sl, pg, fs, g, c, LV_PMD, sl[s, SL_IDX], t)
        for s in tables_in_range(ps, hk, hv, sl, g, p, LV_PTE, vs >> 21, (ve - 1) >> 21):
            idx = sl[s, SL_IDX]
            d = ht_get(hk, hv, tkey(0, c, idx))
            if d < 0:
                d = tbl_alloc(ps, hk, hv, sl, pg, fs, g, c, LV_PTE, idx, t)
            rs = idx << 21
            a = (max(vs, rs) - rs) >> 12
            b = (min(ve, rs + PMD_SIZE) - rs) >> 12
            for k in range(a, b):
                e = pg[s * 512 + k]
                if e != E_NONE:
                    pte_set(ps, sl, pg, g, prm, d, k, e)
            sl[d, SL_HUGE] = sl[s, SL_HUGE]
