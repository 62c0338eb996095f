/* Shared by the workloads: print the kernel's own numbers just before exit.
 *
 * print_final_status(prefix) prints "<prefix>VmPTE: N kB" (and VmRSS, VmSize)
 * from /proc/self/status, then sleeps 20 ms so a 1 kHz /proc sampler sees
 * the same state.  `ptreplay record`'s truth must end on exactly that VmPTE.
 */
#ifndef PTREPLAY_WORKLOAD_COMMON_H
#define PTREPLAY_WORKLOAD_COMMON_H
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define KiB (1UL << 10)
#define MiB (1UL << 20)
#define PAGE 4096UL

static inline void print_final_status(const char *prefix)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) { perror("status"); exit(1); }
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmPTE:", 6) || !strncmp(line, "VmRSS:", 6) || !strncmp(line, "VmSize:", 7))
            printf("%s%s", prefix, line);
    fclose(f);
    fflush(stdout);
    usleep(20000);  /* let a 1 ms /proc sampler see the final state */
}

/* mmap `len` bytes of anonymous memory at a 2 MiB-aligned address (over-map and trim),
 * so tests of whole-table behaviour do not depend on the kernel's placement. */
static inline char *mmap_aligned(size_t len, int prot)
{
    size_t align = 2 * MiB;
    char *raw = mmap(NULL, len + align, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) { perror("mmap"); exit(1); }
    char *p = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    if (p > raw) munmap(raw, p - raw);
    if (p + len < raw + len + align) munmap(p + len, raw + len + align - (p + len));
    madvise(p, len, MADV_NOHUGEPAGE);  /* 4 KiB pages whatever the host's THP mode */
    return p;
}

/* Write one byte in every page of [p, p+len): one write fault per page. */
static inline void touch(char *p, size_t len)
{
    for (size_t off = 0; off < len; off += PAGE)
        p[off] = 1;
}

/* Deterministic pseudo-random numbers (xorshift64). */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return *s = x;
}

static inline void die(const char *what) { perror(what); exit(1); }
#endif
