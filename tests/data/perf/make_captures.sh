#!/bin/sh
# Re-create the tiny perf.data captures used by tests/test_perfdata.py (run as root, perf 6.x).
# The reader's oracle is `perf script` on the same files, so no expected output is stored.
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
gcc -O2 -o "$tmp/seed_loop" ../../../workloads/seed_loop.c
cat > "$tmp/mt.c" <<'C'
/* 3 threads + 1 forked child: mmap, touch, madvise, mremap, mprotect, munmap; child execs /bin/true */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
static void *work(void *a)
{
    for (int k = 0; k < 4; k++) {
        char *p = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (int i = 0; i < (1 << 20); i += 4096) p[i] = 1;
        madvise(p, 1 << 20, MADV_DONTNEED);
        p = mremap(p, 1 << 20, 2 << 20, MREMAP_MAYMOVE);
        mprotect(p, 4096, PROT_READ);
        munmap(p, 2 << 20);
    }
    return 0;
}
int main(void)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, work, 0);
    pid_t c = fork();
    if (c == 0) { work(0); execl("/bin/true", "true", (char *)0); _exit(0); }
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    waitpid(c, 0, 0);
    return 0;
}
C
gcc -O2 -pthread -o "$tmp/mt" "$tmp/mt.c"
gcc -O2 -pthread -o "$tmp/migrate" ../../../workloads/migrate.c
EV="-e exceptions:page_fault_user -e exceptions:page_fault_kernel -e syscalls:sys_enter_mmap -e syscalls:sys_exit_mmap
 -e syscalls:sys_enter_munmap -e syscalls:sys_exit_munmap -e syscalls:sys_enter_madvise -e syscalls:sys_exit_madvise
 -e syscalls:sys_enter_brk -e syscalls:sys_exit_brk -e syscalls:sys_enter_mremap -e syscalls:sys_exit_mremap
 -e syscalls:sys_enter_mprotect -e syscalls:sys_exit_mprotect -e syscalls:sys_enter_exit_group
 -e sched:sched_process_fork -e sched:sched_process_exec -e sched:sched_process_exit -e mmap:exit_mmap"
R="perf record -q -k CLOCK_MONOTONIC"
rm -rf seed_z.data seed_plain.data seed_pipe.data seed_pipez.data mt_z.data mt_threads_z.data mt_cg_z.data nofault.data sampled.data \
       migrate_z.data migrate_threads_z.data
$R -z $EV -o seed_z.data -- "$tmp/seed_loop" 1 8 1 >/dev/null
$R $EV -o seed_plain.data -- "$tmp/seed_loop" 1 2 1 >/dev/null
$R $EV -o - -- "$tmp/seed_loop" 1 2 1 > seed_pipe.data
$R -z $EV -o - -- "$tmp/seed_loop" 1 8 1 > seed_pipez.data
$R -z $EV -o mt_z.data -- "$tmp/mt"
$R -z $EV --threads -o mt_threads_z.data -- "$tmp/mt"
$R -z --call-graph fp $EV -o mt_cg_z.data -- "$tmp/mt"
# syscalls that migrate CPUs mid-call (exit before enter in file order; 8 of 71 when made)
$R -z $EV -o migrate_z.data -- "$tmp/migrate" 16 20 >/dev/null
$R -z $EV --threads -o migrate_threads_z.data -- "$tmp/migrate" 16 20 >/dev/null
$R -e syscalls:sys_enter_mmap -e syscalls:sys_exit_mmap -o nofault.data -- /bin/true
$R -F 1000 -e exceptions:page_fault_user -o sampled.data -- "$tmp/seed_loop" 1 2 1 >/dev/null
# a 1-page ring buffer overflows: LOST and LOST_SAMPLES records (396 events lost when made)
$R -z -m 1 -e exceptions:page_fault_user -e exceptions:page_fault_kernel \
   -e syscalls:sys_enter_mmap -e syscalls:sys_exit_mmap -e syscalls:sys_enter_munmap -e syscalls:sys_exit_munmap \
   -e syscalls:sys_enter_madvise -e syscalls:sys_exit_madvise -e syscalls:sys_enter_brk -e syscalls:sys_exit_brk \
   -o lost_z.data -- "$tmp/seed_loop" 1 8 1 >/dev/null
chmod -R a+rX .
rm -rf "$tmp"
