/* Allocator churn: rounds of malloc of varied sizes, touching every page,
 * then free in a shuffled order.  Run under an allocator that gives memory
 * back with madvise (jemalloc with MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0
 * purges with MADV_DONTNEED at once; tcmalloc releases spans) to see how
 * purges of partial and whole 2 MiB regions leave PTE tables behind.
 *
 *   alloc_churn ROUNDS BLOCKS SEED
 *     ROUNDS  rounds of allocate-touch-free       (default 60)
 *     BLOCKS  live allocations per round          (default 48)
 *     SEED    xorshift seed: same seed, same sizes (default 1)
 *
 * Sizes: 1/2 small (16 B-4 KiB), 1/3 medium (4-256 KiB), 1/6 large (256 KiB-3 MiB).
 * Each round frees only the blocks with an even index first, allocates a new
 * set, then frees everything: fragmentation the allocator must purge.
 */
#include "common.h"

static size_t pick_size(uint64_t *s)
{
    uint64_t r = rng_next(s);
    switch (r % 6) {
    case 0: case 1: case 2: return 16 + (r >> 8) % (4 * KiB);
    case 3: case 4:         return 4 * KiB + (r >> 8) % (252 * KiB);
    default:                return 256 * KiB + (r >> 8) % (2816 * KiB);
    }
}

static void fill(char **blk, size_t n, uint64_t *s, int only_empty)
{
    for (size_t i = 0; i < n; i++) {
        if (only_empty && blk[i]) continue;
        size_t sz = pick_size(s);
        blk[i] = malloc(sz);
        if (!blk[i]) die("malloc");
        memset(blk[i], (int)i, sz);
    }
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? strtol(argv[1], 0, 0) : 60;
    size_t blocks = argc > 2 ? strtoul(argv[2], 0, 0) : 48;
    uint64_t seed = argc > 3 ? strtoull(argv[3], 0, 0) : 1;
    char **blk = calloc(blocks, sizeof *blk);
    if (!blk) die("calloc");
    for (long r = 0; r < rounds; r++) {
        fill(blk, blocks, &seed, 1);
        for (size_t i = 0; i < blocks; i += 2) { free(blk[i]); blk[i] = NULL; }
        fill(blk, blocks, &seed, 1);
        for (size_t i = 0; i < blocks; i++) {      /* shuffled free of everything */
            size_t j = i + rng_next(&seed) % (blocks - i);
            char *t = blk[i]; blk[i] = blk[j]; blk[j] = t;
        }
        for (size_t i = 0; i < blocks; i++) { free(blk[i]); blk[i] = NULL; }
    }
    free(blk);
    print_final_status("final ");
    return 0;
}
