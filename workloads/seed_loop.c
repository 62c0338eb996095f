/* The seed's reproducer: mmap a large anonymous region, then ITER times touch
 * 2 MiB and give it back with madvise(MADV_DONTNEED), in SPLIT pieces.
 *
 *   seed_loop GIB ITER SPLIT
 *     GIB    size of the mapping in GiB            (seed: 50)
 *     ITER   number of 2 MiB chunks touched+zapped  (seed: 25600)
 *     SPLIT  1: one 2 MiB DONTNEED per chunk (upstream PT_RECLAIM frees the table)
 *            2: two 1 MiB DONTNEEDs per chunk (upstream never frees it)
 *
 * Prints its own /proc/self/status VmPTE/VmRSS/VmSize just before exiting
 * ("final VmPTE: N kB"), which is the truth `ptreplay record` must match.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void print_status(void)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) { perror("status"); exit(1); }
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmPTE:", 6) || !strncmp(line, "VmRSS:", 6) || !strncmp(line, "VmSize:", 7))
            printf("final %s", line);
    fclose(f);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    size_t gib = argc > 1 ? strtoul(argv[1], 0, 0) : 50;
    long iter = argc > 2 ? strtol(argv[2], 0, 0) : 25600;
    int split = argc > 3 ? atoi(argv[3]) : 1;
    size_t len = gib << 30, chunk = 2UL << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    for (long i = 0; i < iter; i++) {
        char *c = p + ((size_t)i * chunk) % len;
        for (size_t off = 0; off < chunk; off += 4096)
            c[off] = 1;
        for (int s = 0; s < split; s++)
            if (madvise(c + s * (chunk / split), chunk / split, MADV_DONTNEED)) { perror("madvise"); return 1; }
    }
    print_status();
    usleep(20000);  /* let a 1 ms /proc sampler see the final state */
    return 0;
}
