/* A thread's syscalls migrate between CPUs while they run.
 *
 * The worker fills a mapping page by page, gives it back with one
 * MADV_DONTNEED (zapping thousands of pages takes a while), and unmaps it;
 * meanwhile the main thread moves the worker from CPU to CPU every 20 us
 * with sched_setaffinity.  Many calls then enter on one CPU and exit on
 * another, so their sys_enter and sys_exit records sit in different per-CPU
 * ring buffers (different data.N files with `perf record --threads`), and
 * the exit can come first in the file.
 *
 *   migrate MIB ROUNDS      (defaults 16 and 20: 16 MiB filled 20 times)
 *
 * Needs two CPUs or more to migrate anything.
 */
#include "common.h"   /* first: defines _GNU_SOURCE */
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>

static size_t len;
static long rounds;
static volatile int done;
static volatile pid_t worker_tid;

static void *worker(void *arg)
{
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    for (long r = 0; r < rounds; r++) {
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            die("mmap");
        touch(p, len);
        if (madvise(p, len, MADV_DONTNEED))
            die("madvise");
        if (munmap(p, len))
            die("munmap");
    }
    done = 1;
    return NULL;
}

int main(int argc, char **argv)
{
    len = (argc > 1 ? strtoul(argv[1], 0, 0) : 16) * MiB;
    rounds = argc > 2 ? strtol(argv[2], 0, 0) : 20;
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL))
        die("pthread_create");
    for (int cpu = 0; !done; cpu = (cpu + 1) % ncpu) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (worker_tid)
            sched_setaffinity(worker_tid, sizeof(set), &set);   /* fails harmlessly once it exited */
        usleep(20);
    }
    pthread_join(t, NULL);
    print_final_status("final ");
    return 0;
}
