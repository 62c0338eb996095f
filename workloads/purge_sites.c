/* Known call sites for the attribution test (issue #5).
 *
 * Two purge sites leave different numbers of empty PTE tables behind:
 *   purge_arena()  zaps each 2 MiB region whole with one MADV_DONTNEED
 *                  (64 tables emptied; on 6.14+ with CONFIG_PT_RECLAIM the
 *                  kernel frees them instead)
 *   trim_cache()   zaps each 2 MiB region as two 1 MiB halves (16 tables
 *                  emptied; PT_RECLAIM frees none: no zap covers a table)
 * fill_pages() is the only code that faults pages in, so it allocates every
 * table.  Prints the kernel's VmPTE at the end.
 *   purge_sites
 */
#include "common.h"

#define REGION (2UL << 20)
#define ARENA_REGIONS 64
#define CACHE_REGIONS 16

__attribute__((noinline)) static void fill_pages(char *p, size_t len)
{
    for (size_t off = 0; off < len; off += 4096)
        ((volatile char *)p)[off] = 1;  /* not touch(): the fault ip must be here */
}

__attribute__((noinline)) static void purge_arena(char *p, size_t len)
{
    if (madvise(p, len, MADV_DONTNEED))
        die("madvise");
}

__attribute__((noinline)) static void trim_cache(char *p, size_t len)
{
    if (madvise(p, len / 2, MADV_DONTNEED) || madvise(p + len / 2, len / 2, MADV_DONTNEED))
        die("madvise");
}

int main(void)
{
    char *arena = mmap_aligned((size_t)ARENA_REGIONS * REGION, PROT_READ | PROT_WRITE);
    char *cache = mmap_aligned((size_t)CACHE_REGIONS * REGION, PROT_READ | PROT_WRITE);
    for (int i = 0; i < ARENA_REGIONS; i++) {
        fill_pages(arena + i * REGION, REGION);
        purge_arena(arena + i * REGION, REGION);
    }
    for (int i = 0; i < CACHE_REGIONS; i++) {
        fill_pages(cache + i * REGION, REGION);
        trim_cache(cache + i * REGION, REGION);
    }
    print_final_status("final ");
    return 0;
}
