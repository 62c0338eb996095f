/* A process to take a census of: builds a known page-table state, says what it built, waits.
 *
 *   census_target fresh N      touch one page in each of N 2 MiB regions (spread over 3 GiB),
 *                              plus all 512 pages of one more: no table is empty
 *   census_target halves N     touch N whole 2 MiB regions, then MADV_DONTNEED each as two 1 MiB
 *                              halves: pt_reclaim frees a table only when one zap covers the whole
 *                              2 MiB, so N PTE tables stay allocated and empty
 *   census_target sparse GIB K reserve GIB GiB (MAP_NORESERVE) and touch K pages spread over it
 *   census_target thp          one PMD-mapped THP written, one huge zero page read (MADV_HUGEPAGE),
 *                              one region of 4 KiB pages, one guard region (MADV_GUARD_INSTALL)
 *
 * It prints "key value" lines (what it built, and its own VmPTE) and then "ready", and holds the
 * state until its stdin is closed.  Built by workloads/build.sh; used by tests/test_census.py and
 * benchmarks/bench_census.py.
 */
#include "common.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

static long status_kb(const char *field)
{
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') v = atol(line + n + 1);
    fclose(f);
    return v;
}

static void fresh(long n)
{
    /* 3 GiB so the regions fall into several 1 GiB (PMD table) spans */
    size_t len = 3UL << 30;
    char *p = mmap_aligned(len, PROT_READ | PROT_WRITE);
    uint64_t seed = 42;
    size_t slots = len / (2 * MiB);
    char *used = calloc(slots, 1);
    for (long i = 0; i < n; i++) {
        size_t r;
        do r = rng_next(&seed) % (slots - 1); while (used[r]);
        used[r] = 1;
        p[r * 2 * MiB + (rng_next(&seed) % 512) * PAGE] = 1;
    }
    touch(p + (slots - 1) * 2 * MiB, 2 * MiB);   /* one full table */
    printf("touched_regions %ld\n", n + 1);
}

static void halves(long n)
{
    char *p = mmap_aligned(n * 2 * MiB, PROT_READ | PROT_WRITE);
    touch(p, n * 2 * MiB);
    for (long i = 0; i < n; i++) {
        madvise(p + i * 2 * MiB, MiB, MADV_DONTNEED);
        madvise(p + i * 2 * MiB + MiB, MiB, MADV_DONTNEED);
    }
    printf("empty_tables %ld\n", n);
}

static void sparse(long gib, long k)
{
    size_t len = (size_t)gib << 30;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    madvise(p, len, MADV_NOHUGEPAGE);
    for (long i = 0; i < k; i++)
        p[(len / k) * i] = 1;
    printf("virt_bytes %zu\n", len);
}

static void thp(void)
{
    char *p = mmap_aligned(8 * MiB, PROT_READ | PROT_WRITE);
    int ok = madvise(p, 4 * MiB, MADV_HUGEPAGE) == 0;
    p[0] = 1;                                   /* write fault: a PMD-mapped THP (+ its deposit) */
    volatile char c = p[2 * MiB];               /* read fault: the huge zero page (+ its deposit) */
    (void)c;
    touch(p + 4 * MiB, 64 * PAGE);              /* 4 KiB pages (MADV_NOHUGEPAGE from mmap_aligned) */
    int guard = madvise(p + 6 * MiB, 16 * PAGE, MADV_GUARD_INSTALL) == 0;
    printf("madv_hugepage %d\nguard %d\n", ok, guard);
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: census_target fresh N | halves N | sparse GIB K | thp\n"); return 2; }
    if (!strcmp(argv[1], "fresh") && argc > 2) fresh(atol(argv[2]));
    else if (!strcmp(argv[1], "halves") && argc > 2) halves(atol(argv[2]));
    else if (!strcmp(argv[1], "sparse") && argc > 3) sparse(atol(argv[2]), atol(argv[3]));
    else if (!strcmp(argv[1], "thp")) thp();
    else { fprintf(stderr, "census_target: bad arguments\n"); return 2; }
    printf("vmpte_kb %ld\nready\n", status_kb("VmPTE"));
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0)
        ;
    return 0;
}
