/* mm_holder: a process whose address space is torn down by another process.
 *
 *   mm_holder [MIB]
 *
 * The parent forks a child that reserves 64 GiB (MAP_NORESERVE), touches its first 4 MiB,
 * then waits.  A reader thread of the parent reads the child's /proc/PID/pagemap over the
 * reserve in one pread() of 128 MiB (~0.1 s here): pagemap_read() holds a reference to the
 * child's mm (mm_users) for the whole walk.  The parent SIGKILLs the child during that read, so the
 * child's exit drops the next-to-last reference and the reader's mmput() the last one:
 * exit_mmap() then runs in the reader thread, in the parent process (as when a monitoring
 * agent's /proc read, or ptreplay's own truth sampler, outlives a dying process).
 * Then the parent maps and touches MIB MiB of its own and prints its final status.
 *
 * Each attempt prints "mm_holder: attempt N: read done after kill: yes|no"; a read that
 * ended before the kill, or began after the child's mm was gone (it reads 0 bytes), held
 * nothing (the child then tore down its own mm) and is tried again, up to 5 times.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static atomic_int reading;
static atomic_long read_done_ns;
static ssize_t read_got;
static int pagemap_fd;
static uintptr_t reserve_at;
static char *read_buf;
static size_t read_len;

static long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *reader(void *arg)
{
    (void)arg;
    atomic_store(&reading, 1);
    ssize_t n = pread(pagemap_fd, read_buf, read_len, (off_t)(reserve_at / PAGE * 8));
    atomic_store(&read_done_ns, now_ns());
    if (n < 0) { perror("read pagemap"); exit(1); }
    read_got = n;          /* 0: the mm was gone when the read began (it held nothing) */
    return NULL;
}

#define RESERVE (64UL << 30)

static void child_main(int ready_fd)
{
    char *p = mmap_aligned(RESERVE, PROT_READ | PROT_WRITE);
    for (size_t off = 0; off < 4 * MiB; off += PAGE)
        p[off] = 1;
    uintptr_t at = (uintptr_t)p;
    if (write(ready_fd, &at, sizeof at) != sizeof at) exit(1);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 8;
    read_len = 128 * MiB;
    read_buf = malloc(read_len);
    if (!read_buf) { perror("malloc"); return 1; }
    for (int attempt = 1; attempt <= 5; attempt++) {
        int fds[2];
        if (pipe(fds)) { perror("pipe"); return 1; }
        pid_t child = fork();
        if (child < 0) { perror("fork"); return 1; }
        if (child == 0) {
            close(fds[0]);
            child_main(fds[1]);
        }
        close(fds[1]);
        if (read(fds[0], &reserve_at, sizeof reserve_at) != sizeof reserve_at) {
            fprintf(stderr, "child failed\n");
            return 1;
        }
        close(fds[0]);
        usleep(200000);    /* the child's truth: ~200 samples, its 64 GiB VIRT a small part of its error */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/pagemap", child);
        pagemap_fd = open(path, O_RDONLY);
        if (pagemap_fd < 0) { perror("open pagemap"); return 1; }
        atomic_store(&reading, 0);
        atomic_store(&read_done_ns, 0);
        pthread_t t;
        pthread_create(&t, NULL, reader, NULL);
        while (!atomic_load(&reading))
            ;
        usleep(10000);
        long killed = now_ns();
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        pthread_join(t, NULL);
        close(pagemap_fd);
        int held = atomic_load(&read_done_ns) > killed && read_got > 0;
        printf("mm_holder: attempt %d: read done after kill: %s\n", attempt, held ? "yes" : "no");
        fflush(stdout);
        if (held)
            break;
    }
    char *mine = mmap_aligned(mib * MiB, PROT_READ | PROT_WRITE);
    for (size_t off = 0; off < mib * MiB; off += PAGE)
        mine[off] = 1;
    usleep(50000);
    print_final_status("final ");
    return 0;
}
