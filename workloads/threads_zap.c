/* Threads fault single pages while one thread zaps whole 2 MiB regions.
 *
 * The reviewers' swap-out-like pattern for per-table reclaim: memory is
 * given back table by table (MADV_DONTNEED of a whole, aligned 2 MiB) and
 * refaulted soon after by other threads, so tables are freed and
 * re-allocated again and again.
 *
 *   threads_zap REGIONS TOUCHERS TOUCHES ZAPS
 *     REGIONS   2 MiB regions in one aligned mapping   (default 16)
 *     TOUCHERS  threads writing single pages           (default 3)
 *     TOUCHES   page writes per toucher                (default 40000)
 *     ZAPS      whole-region DONTNEEDs by the zapper   (default 1500)
 *
 * Timing between threads varies run to run: the final VmPTE is whatever the
 * kernel reports, which the capture's truth records.
 */
#include "common.h"   /* first: defines _GNU_SOURCE */
#include <pthread.h>

static char *base;
static long regions, touches, zaps;

static void *toucher(void *arg)
{
    uint64_t s = 0x9e3779b97f4a7c15ULL * ((uintptr_t)arg + 1);
    for (long i = 0; i < touches; i++) {
        uint64_t r = rng_next(&s);
        size_t region = r % regions, page = (r >> 16) % 512;
        base[region * 2 * MiB + page * PAGE] = 1;
    }
    return NULL;
}

static void *zapper(void *arg)
{
    (void)arg;
    for (long z = 0; z < zaps; z++) {
        if (madvise(base + (z % regions) * 2 * MiB, 2 * MiB, MADV_DONTNEED)) die("madvise");
        usleep(200);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    regions = argc > 1 ? strtol(argv[1], 0, 0) : 16;
    long nt = argc > 2 ? strtol(argv[2], 0, 0) : 3;
    touches = argc > 3 ? strtol(argv[3], 0, 0) : 40000;
    zaps = argc > 4 ? strtol(argv[4], 0, 0) : 1500;
    base = mmap_aligned(regions * 2 * MiB, PROT_READ | PROT_WRITE);
    pthread_t t[64], z;
    if (nt > 64) nt = 64;
    if (pthread_create(&z, NULL, zapper, NULL)) die("pthread_create");
    for (long i = 0; i < nt; i++)
        if (pthread_create(&t[i], NULL, toucher, (void *)i)) die("pthread_create");
    for (long i = 0; i < nt; i++)
        pthread_join(t[i], NULL);
    pthread_join(z, NULL);
    print_final_status("final ");
    return 0;
}
