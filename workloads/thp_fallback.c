/* A huge-page fault that falls back to a 4 KiB page, then one that gets its huge page.
 *
 *   thp_fallback TASKS LIMIT LIFT
 *     TASKS  a memory cgroup's task list (v1 `tasks`, v2 `cgroup.procs`) to move into
 *     LIMIT  that cgroup's limit file (v1 `memory.limit_in_bytes`, v2 `memory.max`), set by
 *            the caller below 2 MiB: a huge page's memcg charge fails (THP_FAULT_FALLBACK_CHARGE)
 *     LIFT   what to write into LIMIT to lift it (v1 "-1", v2 "max")
 *
 * Two aligned 2 MiB regions with MADV_HUGEPAGE (THP `madvise` or `always`).  In the cgroup, a
 * write to region A: the huge page cannot be charged, the fault falls back to one 4 KiB page
 * (memory charged before the move stays with the old cgroup).  Then the limit is lifted and a
 * write to region B gets a huge page.  Prints its RssAnon after each write ("A RssAnon: N kB",
 * "B RssAnon: N kB") and the final status.
 */
#include "common.h"
#include <fcntl.h>

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) { perror(path); exit(1); }
    close(fd);
}

static void print_rss_anon(const char *prefix)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "RssAnon:", 8))
            printf("%s %s", prefix, line);
    if (f) fclose(f);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: thp_fallback TASKS LIMIT LIFT\n"); return 2; }
    size_t R = 2 * MiB;
    char *raw = mmap(NULL, 3 * R, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) { perror("mmap"); return 1; }
    char *a = (char *)(((uintptr_t)raw + R - 1) & ~(uintptr_t)(R - 1)), *b = a + R;
    madvise(a, 2 * R, MADV_HUGEPAGE);
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", getpid());
    write_file(argv[1], pid);
    usleep(20000);
    a[0] = 1;
    print_rss_anon("A");
    usleep(20000);
    write_file(argv[2], argv[3]);
    b[0] = 1;
    print_rss_anon("B");
    print_final_status("final ");
    return 0;
}
