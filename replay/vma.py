"""Each process's VMAs: vm[p, i] = start, end, VF_* flags, file key, pgoff base (layout VM_*)
for i < ps[p, PS_NVMA], sorted by start.

find_vma, insertion and deletion, __split_vma, the merge rules (vma_merge_*), madvise's and
mprotect's flag changes (mprotect_fixup), and the implicit VMAs a fault outside every known
VMA gets.  No page tables here.
"""
from ptreplay.replay.jit import njit
from ptreplay.replay.layout import (VF_PROT_KNOWN, G_IMPLICIT, G_OUTSIDE, N_VM, ORIGIN_SHIFT, PAGE, PS_NVMA, PS_VIRT,
                                    VF_ANON, VF_ANON_VMA, VF_EXEC, VF_HEAP, VF_IMPLICIT, VF_LOW, VF_PROT, VF_READ,
                                    VF_MOVED, VF_SHARED, VF_WRITE, VM_FILE, VM_PGOFF_BASE, page_up)


@njit(inline="always")
def vma_first_after(vm, ps, p, addr):
    """Index of the first VMA whose end is > addr (find_vma; it may not contain addr).

    See docs/MODEL.md#vma-split-merge."""
    lo = 0
    hi = ps[p, PS_NVMA]
    while lo < hi:
        mid = (lo + hi) >> 1
        if vm[p, mid, 1] <= addr:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(inline="always")
def vma_find(vm, ps, p, addr):
    """Index of the VMA containing addr, or -1 (find_vma + the start check).

    See docs/MODEL.md#vma-split-merge."""
    i = vma_first_after(vm, ps, p, addr)
    if i < ps[p, PS_NVMA] and vm[p, i, 0] <= addr:
        return i
    return -1


@njit
def vma_insert_at(vm, ps, p, i, start, end, flags, file, pgoff_base):
    """See docs/MODEL.md#vma-split-merge."""
    n = ps[p, PS_NVMA]
    for j in range(n, i, -1):
        for col in range(N_VM):
            vm[p, j, col] = vm[p, j - 1, col]
    vm[p, i, 0] = start
    vm[p, i, 1] = end
    vm[p, i, 2] = flags
    vm[p, i, VM_FILE] = file
    vm[p, i, VM_PGOFF_BASE] = pgoff_base
    ps[p, PS_NVMA] = n + 1


@njit
def vma_insert(vm, ps, p, start, end, flags, file, pgoff_base):
    """Add a VMA over a range known to be free (mmap_region); VmSize grows.

    See docs/MODEL.md#mmap."""
    i = vma_first_after(vm, ps, p, start)
    vma_insert_at(vm, ps, p, i, start, end, flags, file, pgoff_base)
    ps[p, PS_VIRT] += end - start


@njit
def vma_delete_at(vm, ps, p, i):
    """See docs/MODEL.md#vma-split-merge."""
    n = ps[p, PS_NVMA]
    for j in range(i, n - 1):
        for col in range(N_VM):
            vm[p, j, col] = vm[p, j + 1, col]
    ps[p, PS_NVMA] = n - 1


@njit
def vma_split(vm, ps, p, addr):
    """Split the VMA strictly containing addr in two (__split_vma).

    See docs/MODEL.md#vma-split-merge."""
    i = vma_find(vm, ps, p, addr)
    if i < 0 or vm[p, i, 0] == addr:
        return
    end = vm[p, i, 1]
    vm[p, i, 1] = addr
    vma_insert_at(vm, ps, p, i + 1, addr, end, vm[p, i, 2], vm[p, i, VM_FILE], vm[p, i, VM_PGOFF_BASE])


@njit
def vma_set_flags(vm, ps, p, lo, hi, set_bits, clear_bits):
    """madvise_update_vma / mprotect_fixup: each VMA in [lo, hi) whose flags change is split
    at the range ends and takes the new flags; one whose flags stay is left whole (both return
    early when the new flags equal the old: mm/madvise.c, mm/mprotect.c).  Then the changed
    VMAs merge with their neighbours (vma_modify_flags -> vma_merge_existing_range).

    See docs/MODEL.md#madvise-flags, docs/MODEL.md#mprotect."""
    changed = False
    i = vma_first_after(vm, ps, p, lo)
    while i < ps[p, PS_NVMA] and vm[p, i, 0] < hi:
        new_flags = (vm[p, i, 2] | set_bits) & ~clear_bits
        if new_flags != vm[p, i, 2]:
            a = max(lo, vm[p, i, 0])
            b = min(hi, vm[p, i, 1])
            vma_split(vm, ps, p, a)
            vma_split(vm, ps, p, b)
            i = vma_find(vm, ps, p, a)
            vm[p, i, 2] = new_flags
            changed = True
        i += 1
    if changed:
        vma_merge_around(vm, ps, p, lo, hi)


@njit
def vma_mergeable(vm, p, i, j):
    """Adjacent VMAs i and j of p may merge (is_mergeable_vma + is_mergeable_anon_vma +
    can_vma_merge_before/after, mm/vma.c): same flags, same file and contiguous vm_pgoff, not
    two different anon_vmas.  A VMA's anon_vma is stood for by the id of the mmap it came from
    (splits keep it).  File and shared anonymous VMAs: the file key and pgoff base (VM_FILE,
    VM_PGOFF_BASE) decide; one without a file key (a snapshot's) never merges.  Private
    anonymous VMAs: an anonymous VMA's vm_pgoff is its mmap address >> 12 and mremap keeps it
    (copy_vma), so a moved VMA (VF_MOVED, a fresh id per move) merges only with pieces of the
    same move, never with an unmoved neighbour.  Heap and implicit VMAs never merge.

    See docs/MODEL.md#vma-split-merge."""
    f1 = vm[p, i, 2]
    f2 = vm[p, j, 2]
    if ((f1 ^ f2) & VF_LOW & ~VF_ANON_VMA) != 0 or (f1 & (VF_IMPLICIT | VF_HEAP)) != 0:
        return False
    if vm[p, i, VM_FILE] != vm[p, j, VM_FILE]:
        return False
    if vm[p, i, VM_FILE] != 0:
        if vm[p, i, VM_PGOFF_BASE] != vm[p, j, VM_PGOFF_BASE]:
            return False
    elif (f1 & VF_ANON) == 0 or (f1 & VF_SHARED) != 0:
        return False
    elif (f1 & VF_MOVED) != 0 and (f1 >> ORIGIN_SHIFT) != (f2 >> ORIGIN_SHIFT):
        return False
    both = (f1 & VF_ANON_VMA) != 0 and (f2 & VF_ANON_VMA) != 0
    return not both or (f1 >> ORIGIN_SHIFT) == (f2 >> ORIGIN_SHIFT)


@njit
def vma_merge_around(vm, ps, p, lo, hi):
    """Merge mergeable neighbours among the VMAs touching [lo, hi] (vma_merge_new_range
    after mmap, vma_merge_existing_range after mprotect/madvise flag changes).

    See docs/MODEL.md#vma-split-merge."""
    i = max(vma_first_after(vm, ps, p, lo) - 1, 0)
    while i + 1 < ps[p, PS_NVMA] and vm[p, i, 0] <= hi:
        f1 = vm[p, i, 2]
        f2 = vm[p, i + 1, 2]
        if vm[p, i, 1] == vm[p, i + 1, 0] and vma_mergeable(vm, p, i, i + 1):
            vm[p, i, 1] = vm[p, i + 1, 1]
            vm[p, i, 2] = f1 if (f1 & VF_ANON_VMA) != 0 else f2
            vma_delete_at(vm, ps, p, i + 1)
        else:
            i += 1


@njit
def do_mprotect(vm, ps, p, addr, length, prot):
    """mprotect_fixup: split at the range ends, set the new protection, merge back.

    See docs/MODEL.md#mprotect."""
    lo = addr & ~(PAGE - 1)
    hi = page_up(addr + length)
    if hi <= lo or prot < 0:
        return
    bits = VF_PROT_KNOWN
    if (prot & 1) != 0:
        bits |= VF_READ
    if (prot & 2) != 0:
        bits |= VF_WRITE
    if (prot & 4) != 0:
        bits |= VF_EXEC
    vma_set_flags(vm, ps, p, lo, hi, bits, VF_PROT & ~bits)


@njit
def implicit_vma(vm, ps, g, p, addr):
    """A fault with no known VMA (exec's ELF/stack/vdso, or a pre-trace mapping).

    Treated as anonymous private writable memory: a one-page VMA merged with
    neighbouring implicit VMAs, so its tables are counted and protected by
    free_pgtables' floor/ceiling like the real (unseen) VMA would be.

    See docs/MODEL.md#implicit-vma.
    """
    g[G_OUTSIDE] += 1
    page = addr & ~(PAGE - 1)
    i = vma_first_after(vm, ps, p, page)  # first VMA after the hole
    prev_ok = i > 0 and vm[p, i - 1, 1] == page and (vm[p, i - 1, 2] & VF_IMPLICIT) != 0
    next_ok = i < ps[p, PS_NVMA] and vm[p, i, 0] == page + PAGE and (vm[p, i, 2] & VF_IMPLICIT) != 0
    ps[p, PS_VIRT] += PAGE
    if prev_ok and next_ok:
        vm[p, i - 1, 1] = vm[p, i, 1]
        vma_delete_at(vm, ps, p, i)
        return i - 1
    if prev_ok:
        vm[p, i - 1, 1] = page + PAGE
        return i - 1
    if next_ok:
        vm[p, i, 0] = page
        return i
    g[G_IMPLICIT] += 1
    vma_insert_at(vm, ps, p, i, page, page + PAGE, VF_ANON | VF_WRITE | VF_IMPLICIT, 0, 0)
    return i
