/* A process to attach to (`ptreplay record -p`): it builds a state before the trace,
 * then works on a line from stdin, and keeps running after the trace ends.
 *
 *   attach_target FULL EMPTY THP    (regions of 2 MiB)
 *
 * Before the trace: FULL regions written whole, EMPTY regions written then zapped as two
 * 1 MiB halves (the kernel keeps their empty PTE tables: the "inherited" tables), one THP
 * region written after MADV_HUGEPAGE if THP > 0 (a PMD mapping where the host allows it),
 * a file page-cache read (a private file mapping of /proc/self/exe).  Prints "ready".
 * On a stdin line, during the trace: writes FULL new regions, zaps half of them whole
 * (PT_RECLAIM frees those tables), unmaps the first FULL/2 old regions, prints its
 * "final VmPTE" and waits for the next line (EOF: exit).
 */
#include "common.h"
#include <fcntl.h>

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: attach_target FULL EMPTY THP\n"); return 2; }
    size_t full = strtoul(argv[1], 0, 0), empty = strtoul(argv[2], 0, 0), thp = strtoul(argv[3], 0, 0);
    size_t R = 2 * MiB;
    char *old = mmap_aligned((full + empty) * R, PROT_READ | PROT_WRITE);
    for (size_t i = 0; i < full; i++) touch(old + i * R, R);
    for (size_t i = full; i < full + empty; i++) {
        touch(old + i * R, R);
        madvise(old + i * R, R / 2, MADV_DONTNEED);
        madvise(old + i * R + R / 2, R / 2, MADV_DONTNEED);
    }
    if (thp) {
        char *h = mmap_aligned(thp * R, PROT_READ | PROT_WRITE);
        madvise(h, thp * R, MADV_HUGEPAGE);
        for (size_t i = 0; i < thp; i++) h[i * R] = 1;
    }
    int fd = open("/proc/self/exe", O_RDONLY);
    off_t size = lseek(fd, 0, SEEK_END);
    volatile char *f = mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0);
    for (off_t o = 0; o < size; o += PAGE) (void)f[o];
    char *fresh = mmap_aligned(full * R, PROT_READ | PROT_WRITE);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        for (size_t i = 0; i < full; i++) touch(fresh + i * R, R);
        for (size_t i = 0; i < full; i += 2) madvise(fresh + i * R, R, MADV_DONTNEED);
        munmap(old, full / 2 * R);
        print_final_status("final ");
    }
    return 0;
}
