/* The kernel as oracle: a seeded random address-space program.
 *
 *   oracle SEED NOPS [LOG]
 *
 * Runs NOPS random operations (mmap anon/file private/file shared/shared anon, MAP_FIXED,
 * MAP_POPULATE, touches, madvise DONTNEED/FREE/HUGEPAGE/NOHUGEPAGE/REMOVE/POPULATE_*,
 * partial munmap, mprotect, mremap grow/shrink/move/DONTUNMAP, brk, threads, fork with a
 * child doing its own ops).  After each operation it waits GAP_NS (no event: the replay's
 * timeseries ticks fall between operations), reads VmSize, RssAnon, RssFile, RssShmem and
 * VmPTE from /proc/self/status with pread on an fd opened at start into a buffer faulted in
 * at start, stamps CLOCK_MONOTONIC after the read (as `ptreplay record`'s sampler does) and
 * appends the numbers to a log held in .bss.  The log is written at exit, one line a row:
 *
 *   oracle PID T_NS OP KIND OK MEM VMSIZE_KB RSSANON_KB RSSFILE_KB RSSSHMEM_KB VMPTE_KB
 *
 * MEM is the kind of memory the operation acted on (anon, file_private, file_shared,
 * shared_anon, heap; "-" when none).
 *
 * The program re-executes itself without address-space randomization (personality
 * ADDR_NO_RANDOMIZE), so a SEED replays the same addresses, hence the same program.
 *
 * Before the first row every page of every readable VMA the program starts with (ELF, ld.so,
 * libc, stack pre-grown, [vdso]) is touched by faults the trace sees, so later operations
 * fault only in mappings they made; [vvar*] pages are left alone.
 */
#include "common.h"   /* first: defines _GNU_SOURCE */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define GAP_NS 300000L          /* quiet time before each status read */
#define MAX_LOG 4096
#define MAX_REG 48
#define FILE_BYTES (8 * MiB)
#define MAX_TOTAL (40 * MiB)

enum kind { K_ANON, K_FPRIV, K_FSHARED, K_SHANON, K_HEAP };
enum op {
    OP_START, OP_MMAP_ANON, OP_MMAP_FPRIV, OP_MMAP_FSHARED, OP_MMAP_SHANON, OP_MMAP_FIXED,
    OP_TOUCH, OP_DONTNEED, OP_FREE, OP_HUGEPAGE, OP_REMOVE, OP_POPULATE, OP_MUNMAP,
    OP_MPROTECT, OP_MREMAP_GROW, OP_MREMAP_SHRINK, OP_MREMAP_MOVE, OP_MREMAP_DONTUNMAP,
    OP_BRK, OP_THREADS, OP_FORK, OP_CHILD_START, N_OPS
};
static const char *op_names[N_OPS] = {
    "start", "mmap_anon", "mmap_file_private", "mmap_file_shared", "mmap_shared_anon", "mmap_fixed",
    "touch", "dontneed", "free", "hugepage", "remove", "populate", "munmap",
    "mprotect", "mremap_grow", "mremap_shrink", "mremap_move", "mremap_dontunmap",
    "brk", "threads", "fork", "child_start",
};

struct region { char *a; size_t len; int kind, prot; };
static const char *mem_names[] = {"anon", "file_private", "file_shared", "shared_anon", "heap"};

struct row { long t_ns; int pid, op, kind, ok, mem; long vmsize, anon, file, shmem, vmpte; };

static struct row log_rows[MAX_LOG];
static int nlog, log_from;
static char status_buf[8192];
static char maps_buf[65536];
static char out_buf[MAX_LOG * 96];
static struct region reg[MAX_REG];
static int nreg;
static int status_fd, file_fd, log_fd;
static char *brk0, *brk_cur;
static uint64_t rng;
static int op_index;
static int last_mem = -1;     /* kind of the region the current operation acted on */

static uint64_t rnd(uint64_t n) { return n ? rng_next(&rng) % n : 0; }

static long field_kb(const char *name)
{
    char *p = strstr(status_buf, name);
    return p ? strtol(p + strlen(name), NULL, 10) : -1;
}

/* Wait (no event), read the kernel's numbers, stamp the time after the read. */
static void log_state(int op, int ok)
{
    struct timespec gap = {0, GAP_NS}, ts;
    nanosleep(&gap, NULL);
    ssize_t n = pread(status_fd, status_buf, sizeof status_buf - 1, 0);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (n <= 0 || nlog >= MAX_LOG) die("status");
    status_buf[n] = 0;
    struct row *r = &log_rows[nlog++];
    r->t_ns = ts.tv_sec * 1000000000L + ts.tv_nsec;
    r->pid = getpid();
    r->op = op_index++;
    r->kind = op;
    r->ok = ok;
    r->mem = last_mem;
    last_mem = -1;
    r->vmsize = field_kb("VmSize:");
    r->anon = field_kb("RssAnon:");
    r->file = field_kb("RssFile:");
    r->shmem = field_kb("RssShmem:");
    r->vmpte = field_kb("VmPTE:");
}

static void write_log(void)
{
    size_t n = 0;
    for (int i = log_from; i < nlog; i++) {
        struct row *r = &log_rows[i];
        n += snprintf(out_buf + n, sizeof out_buf - n, "oracle %d %ld %d %s %d %s %ld %ld %ld %ld %ld\n",
                      r->pid, r->t_ns, r->op, op_names[r->kind], r->ok,
                      r->mem < 0 ? "-" : mem_names[r->mem], r->vmsize, r->anon,
                      r->file, r->shmem, r->vmpte);
    }
    if (write(log_fd, out_buf, n) != (ssize_t)n) die("write log");
}

/* ---- the program's own start state: touched by traced faults before the first row ---- */

static void __attribute__((noinline)) grow_stack(void)
{
    volatile char deep[192 * 1024];
    for (size_t i = 0; i < sizeof deep; i += PAGE)
        deep[i] = 0;
}

/* The VMAs the program starts with: read once, then touched again after each fork. */
static struct { unsigned long lo, hi; int write; } start_vma[256];
static int nstart;

static void read_start_vmas(void)
{
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0) die("maps");
    ssize_t n = read(fd, maps_buf, sizeof maps_buf - 1);
    close(fd);
    if (n <= 0) die("maps read");
    maps_buf[n] = 0;
    for (char *line = maps_buf; *line && nstart < 256; ) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        unsigned long lo, hi;
        char perms[8] = "";
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[0] == 'r'
                && !strstr(line, "[vvar") && !strstr(line, "[vsyscall]")) {
            start_vma[nstart].lo = lo;
            start_vma[nstart].hi = hi;
            start_vma[nstart++].write = perms[1] == 'w';
        }
        if (!end) break;
        line = end + 1;
    }
}

/* Read every page of the start VMAs, write every writable one: traced faults (a write after
 * a fork is a traced COW fault even on stack pages execve populated unseen). */
static void touch_start_vmas(void)
{
    for (int i = 0; i < nstart; i++)
        for (unsigned long a = start_vma[i].lo; a < start_vma[i].hi; a += PAGE) {
            volatile char *p = (volatile char *)a;
            if (start_vma[i].write) p[0] = p[0];
            else (void)p[0];
        }
}

/* ---- the region list: each region lies inside one kernel VMA ---- */

static void add_region(char *a, size_t len, int kind, int prot)
{
    if (len == 0 || nreg >= MAX_REG) return;
    reg[nreg++] = (struct region){a, len, kind, prot};
}

/* Forget [x, y) in every region (the kernel unmapped or replaced it). */
static void carve(char *x, char *y)
{
    for (int i = 0; i < nreg; i++) {
        struct region r = reg[i];
        char *lo = r.a, *hi = r.a + r.len;
        if (hi <= x || lo >= y) continue;
        reg[i] = reg[--nreg];
        i--;
        if (lo < x) add_region(lo, x - lo, r.kind, r.prot);
        if (hi > y) add_region(y, hi - y, r.kind, r.prot);
    }
}

static size_t total_len(void)
{
    size_t t = 0;
    for (int i = 0; i < nreg; i++) t += reg[i].len;
    return t;
}

/* A random region satisfying kinds (bit mask) and needing prot bits; -1 if none. */
static int pick(int kinds, int prot)
{
    int cand[MAX_REG], n = 0;
    for (int i = 0; i < nreg; i++)
        if ((kinds >> reg[i].kind & 1) && (reg[i].prot & prot) == prot) cand[n++] = i;
    int i = n ? cand[rnd(n)] : -1;
    if (i >= 0) last_mem = reg[i].kind;
    return i;
}

/* A random page range [*lo, *hi) of region i: often a whole aligned 2 MiB, or one
 * reaching over a 2 MiB boundary, so whole-table rules are exercised. */
static void subrange(int i, char **lo, char **hi)
{
    char *a = reg[i].a, *e = a + reg[i].len;
    char *al = (char *)(((uintptr_t)a + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
    switch (rnd(4)) {
    case 0:
        if (al + 2 * MiB <= e) { *lo = al; *hi = al + 2 * MiB; return; }
        break;
    case 1:
        *lo = a; *hi = e;
        return;
    case 2:
        if (al + 2 * MiB <= e) {
            *lo = al - PAGE * rnd((al - a) / PAGE + 1);
            *hi = al + 2 * MiB + PAGE * rnd((e - al - 2 * MiB) / PAGE + 1);
            return;
        }
        break;
    }
    size_t pages = reg[i].len / PAGE, off = rnd(pages);
    *lo = a + off * PAGE;
    *hi = *lo + PAGE * (1 + rnd(pages - off));
}

/* Region starting exactly at addr (a neighbouring mapping), or -1. */
static int region_at(char *addr)
{
    for (int i = 0; i < nreg; i++)
        if (reg[i].a == addr) return i;
    return -1;
}

/* Widen [*lo, *hi) of region i over the junction with the region right after it, if any:
 * often to the aligned 2 MiB around the junction (a zap that covers a whole table only
 * together with the neighbouring VMA, or only when the kernel merged the two). */
static void across_next(int i, char **lo, char **hi)
{
    char *junction = reg[i].a + reg[i].len;
    int j = region_at(junction);
    if (j < 0) return;
    if (reg[j].kind != K_ANON && reg[j].kind != K_HEAP) last_mem = reg[j].kind;  /* file pages zapped too */
    char *blk = (char *)((uintptr_t)junction & ~(uintptr_t)(2 * MiB - 1));
    if (rnd(2) && blk >= reg[i].a && blk + 2 * MiB <= reg[j].a + reg[j].len && blk < junction) {
        *lo = blk;
        *hi = blk + 2 * MiB;
        return;
    }
    *hi = junction + PAGE * (1 + rnd(reg[j].len / PAGE));
}

static size_t rand_len(void)
{
    switch (rnd(5)) {
    case 0: return PAGE * (1 + rnd(16));
    case 1: return 2 * MiB;
    case 2: return 4 * MiB;
    case 3: return 2 * MiB + PAGE * (1 + rnd(256));
    default: return PAGE * (1 + rnd(768));
    }
}

/* ---- operations: each returns 1 if the kernel accepted it ---- */

static int op_mmap(int kind)
{
    size_t len = rand_len();
    int flags = MAP_PRIVATE | MAP_ANONYMOUS, fd = -1, prot = PROT_READ | PROT_WRITE;
    if (kind == K_FPRIV || kind == K_FSHARED) {
        if (len > FILE_BYTES) len = FILE_BYTES;
        flags = kind == K_FPRIV ? MAP_PRIVATE : MAP_SHARED;
        fd = file_fd;
    } else if (kind == K_SHANON) {
        flags = MAP_SHARED | MAP_ANONYMOUS;
    }
    if (rnd(5) == 0) flags |= MAP_POPULATE;
    last_mem = kind;
    char *p = mmap(NULL, len, prot, flags, fd, 0);
    if (p == MAP_FAILED) return 0;
    add_region(p, len, kind, prot);
    return 1;
}

static int op_mmap_fixed(void)
{
    int i = pick(1 << K_ANON | 1 << K_FPRIV | 1 << K_FSHARED | 1 << K_SHANON, 0);
    if (i < 0) return op_mmap(K_ANON);
    char *lo, *hi;
    subrange(i, &lo, &hi);
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (rnd(3) == 0 ? MAP_POPULATE : 0);
    char *p = mmap(lo, hi - lo, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) return 0;
    carve(lo, hi);
    add_region(p, hi - lo, K_ANON, PROT_READ | PROT_WRITE);
    return 1;
}

static void touch_range(char *lo, char *hi, int write, size_t stride)
{
    for (volatile char *p = lo; p < hi; p += stride) {
        if (write) *p = 1;
        else (void)*p;
    }
}

static int op_touch(void)
{
    int write = rnd(3) != 0;
    int i = pick(0x1f, write ? PROT_WRITE : PROT_READ);
    if (i < 0) return 0;
    char *lo, *hi;
    subrange(i, &lo, &hi);
    touch_range(lo, hi, write, PAGE * (1 + rnd(rnd(2) ? 1 : 8)));
    return 1;
}

static int op_madvise(int op)
{
    int kinds = 0x1f, advice = MADV_DONTNEED, prot = 0;
    if (op == OP_FREE) { kinds = 1 << K_ANON | 1 << K_HEAP; advice = MADV_FREE; }
    if (op == OP_HUGEPAGE) { kinds = 1 << K_ANON; advice = rnd(3) ? MADV_HUGEPAGE : MADV_NOHUGEPAGE; }
    if (op == OP_REMOVE) { kinds = 1 << K_FSHARED | 1 << K_SHANON; advice = MADV_REMOVE; prot = PROT_WRITE; }
    if (op == OP_POPULATE) {
        advice = rnd(2) ? MADV_POPULATE_READ : MADV_POPULATE_WRITE;
        prot = advice == MADV_POPULATE_READ ? PROT_READ : PROT_WRITE;
    }
    int i = pick(kinds, prot);
    if (i < 0) return 0;
    char *lo, *hi;
    subrange(i, &lo, &hi);
    if (op == OP_DONTNEED && rnd(2))
        across_next(i, &lo, &hi);
    if (madvise(lo, hi - lo, advice)) return 0;
    if (op == OP_HUGEPAGE) {   /* the VMA is split at lo and hi: keep regions inside VMAs */
        struct region r = reg[i];
        carve(lo, hi);
        add_region(lo, hi - lo, r.kind, r.prot);
    }
    return 1;
}

static int op_munmap(void)
{
    int i = pick(0xf, 0);
    if (i < 0) return 0;
    char *lo, *hi;
    subrange(i, &lo, &hi);
    if (munmap(lo, hi - lo)) return 0;
    carve(lo, hi);
    return 1;
}

static int op_mprotect(void)
{
    int i = pick(0xf, 0);
    if (i < 0) return 0;
    static const int prots[] = {PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE, PROT_READ | PROT_WRITE};
    int prot = prots[rnd(4)];
    char *lo, *hi;
    subrange(i, &lo, &hi);
    if (mprotect(lo, hi - lo, prot)) return 0;
    struct region r = reg[i];
    carve(lo, hi);
    add_region(lo, hi - lo, r.kind, prot);
    return 1;
}

static int op_mremap(int op)
{
    int i = pick(op == OP_MREMAP_GROW || op == OP_MREMAP_DONTUNMAP ? 1 << K_ANON : 0xf, 0);
    if (i < 0) return 0;
    struct region r = reg[i];
    size_t len = r.len, new_len = len;
    char *p, *target = NULL;
    if (op == OP_MREMAP_GROW) {
        new_len = len + PAGE * (1 + rnd(rnd(2) ? 16 : 600));
        p = mremap(r.a, len, new_len, MREMAP_MAYMOVE);
    } else if (op == OP_MREMAP_SHRINK) {
        if (len <= PAGE) return 0;
        new_len = PAGE * (1 + rnd(len / PAGE - 1));
        p = mremap(r.a, len, new_len, 0);
    } else {
        /* reserve a target, sometimes at the source's offset within 2 MiB */
        char *res = mmap(NULL, len + 4 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (res == MAP_FAILED) return 0;
        char *al = (char *)(((uintptr_t)res + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
        target = rnd(2) ? al + ((uintptr_t)r.a & (2 * MiB - 1)) : res + PAGE * rnd(512);
        add_region(res, len + 4 * MiB, K_ANON, PROT_NONE);
        int flags = MREMAP_MAYMOVE | MREMAP_FIXED | (op == OP_MREMAP_DONTUNMAP ? MREMAP_DONTUNMAP : 0);
        p = mremap(r.a, len, len, flags, target);
    }
    if (p == MAP_FAILED) return 0;
    if (op == OP_MREMAP_DONTUNMAP) {
        carve(target, target + len);
        add_region(p, len, r.kind, r.prot);
        return 1;
    }
    carve(r.a, r.a + len);
    if (target) carve(target, target + len);
    add_region(p, new_len, r.kind, r.prot);
    return 1;
}

static int op_brk(void)
{
    char *want = brk_cur + PAGE * (1 + rnd(600));
    if (brk_cur > brk0 && rnd(2)) want = brk0 + PAGE * rnd((brk_cur - brk0) / PAGE);
    last_mem = K_HEAP;
    char *got = (char *)syscall(SYS_brk, want);
    if (got != want) return 0;
    carve(brk0, brk_cur > got ? brk_cur : got);
    brk_cur = got;
    add_region(brk0, brk_cur - brk0, K_HEAP, PROT_READ | PROT_WRITE);
    return 1;
}

struct work { char *lo, *hi; int zap; };

static void *thread_work(void *arg)
{
    struct work *w = arg;
    touch_range(w->lo, w->hi, 1, PAGE);
    if (w->zap) madvise(w->lo, (w->hi - w->lo) / 2 & ~(PAGE - 1), MADV_DONTNEED);
    return NULL;
}

static int op_threads(void)
{
    int i = pick(1 << K_ANON | 1 << K_HEAP, PROT_WRITE);
    if (i < 0 || reg[i].len < 2 * PAGE) return 0;
    char *lo = reg[i].a, *mid = lo + (reg[i].len / PAGE / 2) * PAGE, *hi = lo + reg[i].len;
    static struct work w[2];
    w[0] = (struct work){lo, mid, (int)rnd(2)};
    w[1] = (struct work){mid, hi, (int)rnd(2)};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        if (pthread_create(&t[k], NULL, thread_work, &w[k])) die("pthread_create");
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    return 1;
}

static void op_threads_warmup(void)
{
    static char page[2 * PAGE] __attribute__((aligned(4096)));
    add_region(page, sizeof page, K_ANON, PROT_READ | PROT_WRITE);
    op_threads();
    nreg = 0;
}

static int do_op(int op);

static int op_fork(void)
{
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        log_from = nlog;
        close(status_fd);              /* the inherited fd reads the parent's status */
        status_fd = open("/proc/self/status", O_RDONLY);
        if (status_fd < 0) die("status");
        touch_start_vmas();            /* file pages fork did not copy, before the child's first row */
        log_state(OP_CHILD_START, 1);
        for (int k = 2 + rnd(5); k > 0; k--) {
            int op = OP_MMAP_ANON + rnd(OP_BRK - OP_MMAP_ANON + 1);
            log_state(op, do_op(op));
        }
        write_log();
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int do_op(int op)
{
    switch (op) {
    case OP_MMAP_ANON: return op_mmap(K_ANON);
    case OP_MMAP_FPRIV: return op_mmap(K_FPRIV);
    case OP_MMAP_FSHARED: return op_mmap(K_FSHARED);
    case OP_MMAP_SHANON: return op_mmap(K_SHANON);
    case OP_MMAP_FIXED: return op_mmap_fixed();
    case OP_TOUCH: return op_touch();
    case OP_DONTNEED: case OP_FREE: case OP_HUGEPAGE: case OP_REMOVE: case OP_POPULATE:
        return op_madvise(op);
    case OP_MUNMAP: return op_munmap();
    case OP_MPROTECT: return op_mprotect();
    case OP_MREMAP_GROW: case OP_MREMAP_SHRINK: case OP_MREMAP_MOVE: case OP_MREMAP_DONTUNMAP:
        return op_mremap(op);
    case OP_BRK: return op_brk();
    case OP_THREADS: return op_threads();
    case OP_FORK: return op_fork();
    }
    return 0;
}

/* Weighted choice: touches and zaps most often; maps when there is little mapped. */
static int choose_op(void)
{
    if (nreg < 2 || (nreg < MAX_REG - 8 && total_len() < MAX_TOTAL && rnd(4) == 0))
        return OP_MMAP_ANON + rnd(5);
    if (nreg >= MAX_REG - 8 || total_len() >= MAX_TOTAL) return OP_MUNMAP;
    static const int table[] = {
        OP_TOUCH, OP_TOUCH, OP_TOUCH, OP_TOUCH, OP_DONTNEED, OP_DONTNEED, OP_DONTNEED, OP_FREE,
        OP_HUGEPAGE, OP_REMOVE, OP_POPULATE, OP_MUNMAP, OP_MUNMAP, OP_MPROTECT, OP_MREMAP_GROW,
        OP_MREMAP_SHRINK, OP_MREMAP_MOVE, OP_MREMAP_DONTUNMAP, OP_BRK, OP_THREADS, OP_FORK,
        OP_MMAP_FIXED,
    };
    return table[rnd(sizeof table / sizeof table[0])];
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: oracle SEED NOPS [LOG]\n");
        return 2;
    }
    int persona = personality(0xffffffff);   /* no ASLR: the same SEED makes the same program */
    if (persona != -1 && !(persona & ADDR_NO_RANDOMIZE) && personality(persona | ADDR_NO_RANDOMIZE) != -1)
        execv("/proc/self/exe", argv);
    rng = strtoull(argv[1], NULL, 0) * 0x9e3779b97f4a7c15ULL + 1;
    int nops = atoi(argv[2]);
    log_fd = argc > 3 ? open(argv[3], O_WRONLY | O_CREAT | O_APPEND, 0644) : 1;
    status_fd = open("/proc/self/status", O_RDONLY);
    char path[] = "/tmp/oracle-XXXXXX";
    file_fd = mkstemp(path);
    if (log_fd < 0 || status_fd < 0 || file_fd < 0) die("open");
    unlink(path);
    for (size_t off = 0; off < FILE_BYTES; off += sizeof maps_buf)   /* the file's pages cached */
        if (pwrite(file_fd, maps_buf, sizeof maps_buf, off) != (ssize_t)sizeof maps_buf) die("pwrite");
    memset(log_rows, 0, sizeof log_rows);
    memset(out_buf, 0, sizeof out_buf);
    log_state(OP_START, 1);            /* vDSO, status read and log paths run once */
    nlog = 0;
    op_index = 0;
    grow_stack();
    read_start_vmas();
    touch_start_vmas();
    op_threads_warmup();               /* glibc's thread stacks and TLS (malloc: brk) made now */
    pid_t warm = fork();               /* write-protects every page: the next touch COW-faults */
    if (warm == 0) _exit(0);
    if (warm < 0 || waitpid(warm, NULL, 0) != warm) die("fork");
    touch_start_vmas();
    brk0 = brk_cur = (char *)syscall(SYS_brk, 0);
    log_state(OP_START, 1);
    for (int k = 0; k < nops; k++) {
        int op = choose_op();
        log_state(op, do_op(op));
    }
    write_log();
    return 0;
}
