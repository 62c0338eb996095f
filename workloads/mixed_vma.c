/* Every VMA operation the replayer models, one after another, small sizes.
 *
 *   mixed_vma [DIR]     DIR: where to create the scratch file (default /tmp)
 *
 * Steps (each prints nothing; the final status is printed at the end):
 *  1 munmap: 8 MiB anon, touched; unmap a middle 3 MiB (partial tables
 *    survive), the first 1 MiB, then the rest.
 *  2 mremap: grow in place (2 -> 4 MiB), shrink (4 -> 1 MiB), move an
 *    unaligned 1 MiB with MREMAP_MAYMOVE|MREMAP_FIXED (PTEs move one by one),
 *    move a touched, aligned 4 MiB to an aligned address (whole-table moves).
 *  3 brk: grow 4 MiB and touch, shrink 3 MiB, grow 1 MiB and touch, back to start.
 *  4 files: a 4 MiB file it writes; MAP_PRIVATE read faults everywhere
 *    (fault-around), write faults on every 8th page (COW); MAP_SHARED read
 *    then write faults; msync; unmap both; unlink.
 *  5 mprotect: 4 MiB anon touched, middle 1 MiB made read-only (VMA split),
 *    a 2 MiB DONTNEED across the split (clipped per VMA: no table freed by
 *    PT_RECLAIM), restored; an anonymous read fault (zero page) then a write.
 *  6 fork: the child writes inherited memory, maps and touches 1 MiB, prints
 *    "child VmPTE" and exits; the parent waits.
 * Leaves a few regions mapped so the final VmPTE is not just the baseline.
 */
#include "common.h"   /* first: defines _GNU_SOURCE */
#include <fcntl.h>
#include <sys/wait.h>

static void step_munmap(void)
{
    char *p = mmap_aligned(8 * MiB, PROT_READ | PROT_WRITE);
    touch(p, 8 * MiB);
    if (munmap(p + 3 * MiB, 3 * MiB)) die("munmap middle");
    if (munmap(p, 1 * MiB)) die("munmap head");
    if (munmap(p + 1 * MiB, 2 * MiB)) die("munmap rest a");
    if (munmap(p + 6 * MiB, 2 * MiB)) die("munmap rest b");
}

static char *keep_moved;

static void step_mremap(void)
{
    /* grow in place: reserve 4 MiB, keep the lower 2 MiB */
    char *p = mmap_aligned(4 * MiB, PROT_READ | PROT_WRITE);
    if (munmap(p + 2 * MiB, 2 * MiB)) die("munmap upper");
    touch(p, 2 * MiB);
    char *q = mremap(p, 2 * MiB, 4 * MiB, 0);
    if (q == MAP_FAILED) die("mremap grow");
    touch(q + 2 * MiB, 2 * MiB);
    q = mremap(q, 4 * MiB, 1 * MiB, 0);
    if (q == MAP_FAILED) die("mremap shrink");
    /* unaligned move of 1 MiB to the middle of a reserved, aligned 4 MiB */
    char *dst = mmap_aligned(4 * MiB, PROT_NONE);
    char *m = mremap(q, 1 * MiB, 1 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, dst + 512 * KiB);
    if (m == MAP_FAILED) die("mremap move");
    touch(m, 1 * MiB);
    /* whole 2 MiB tables: aligned 4 MiB, touched, moved to an aligned destination */
    char *src = mmap_aligned(4 * MiB, PROT_READ | PROT_WRITE);
    touch(src, 4 * MiB);
    char *dst2 = mmap_aligned(4 * MiB, PROT_NONE);
    keep_moved = mremap(src, 4 * MiB, 4 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, dst2);
    if (keep_moved == MAP_FAILED) die("mremap table move");
    touch(keep_moved, 4 * MiB);  /* already present: no faults, same tables */
    if (munmap(dst, 4 * MiB)) die("munmap dst");
}

static void step_brk(void)
{
    char *start = sbrk(0);
    char *p = sbrk(4 * MiB);
    if (p == (void *)-1) die("sbrk grow");
    touch(p, 4 * MiB);
    if (sbrk(-(long)(3 * MiB)) == (void *)-1) die("sbrk shrink");
    p = sbrk(1 * MiB);
    if (p == (void *)-1) die("sbrk grow 2");
    touch(p, 1 * MiB);
    if (brk(start)) die("brk back");
}

static void step_files(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/ptreplay-mixed-vma.%d", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("open");
    static char buf[64 * KiB];
    memset(buf, 'x', sizeof buf);
    for (size_t off = 0; off < 4 * MiB; off += sizeof buf)
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) die("write");
    volatile char sink = 0;
    char *priv = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (priv == MAP_FAILED) die("mmap private");
    for (size_t off = 0; off < 4 * MiB; off += PAGE) sink += priv[off];
    for (size_t off = 0; off < 4 * MiB; off += 8 * PAGE) priv[off] = 1;
    char *shr = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shr == MAP_FAILED) die("mmap shared");
    for (size_t off = 0; off < 2 * MiB; off += PAGE) sink += shr[off];
    for (size_t off = 0; off < 4 * MiB; off += 4 * PAGE) shr[off] = 2;
    if (msync(shr, 4 * MiB, MS_SYNC)) die("msync");
    if (munmap(priv, 4 * MiB) || munmap(shr, 4 * MiB)) die("munmap file");
    close(fd);
    unlink(path);
    (void)sink;
}

static char *keep_prot;

static void step_mprotect(void)
{
    char *p = mmap_aligned(4 * MiB, PROT_READ | PROT_WRITE);
    touch(p, 4 * MiB);
    if (mprotect(p + 1536 * KiB, 1 * MiB, PROT_READ)) die("mprotect ro");
    if (madvise(p, 2 * MiB, MADV_DONTNEED)) die("madvise split");
    if (mprotect(p + 1536 * KiB, 1 * MiB, PROT_READ | PROT_WRITE)) die("mprotect rw");
    volatile char sink = 0;
    for (size_t off = 2 * MiB; off < 3 * MiB; off += PAGE) sink += p[off];   /* zero page */
    touch(p + 2 * MiB, 1 * MiB);                                            /* now real pages */
    (void)sink;
    keep_prot = p;
}

static void step_fork(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        touch(keep_moved, 1 * MiB);   /* COW of inherited pages */
        char *c = mmap_aligned(1 * MiB, PROT_READ | PROT_WRITE);
        touch(c, 1 * MiB);
        print_final_status("child ");
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) die("child");
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    step_munmap();
    step_mremap();
    step_brk();
    step_files(dir);
    step_mprotect();
    step_fork();
    print_final_status("final ");
    return 0;
}
