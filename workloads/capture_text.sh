#!/bin/bash
# Re-create the text samples in data/text/ (needs root, perf, trace-cmd, tracefs, gcc, zstd).
#
# The same workload, `seed_loop 1 64 1`, is captured three ways:
#   1. ftrace text from a private tracefs instance (trace_clock mono, events limited to the
#      workload with set_event_pid):  seed-64.ftrace.txt (the `trace` file, with its # header)
#      plus a small second capture with options/record-tgid and a forking wrapper
#      (`sh -c 'seed_loop 1 2 1; true'`, options/event-fork) read from trace_pipe:
#      seed-2-tgid.trace_pipe.txt
#   2. perf script text of `perf record -z -k CLOCK_MONOTONIC`: the default output
#      (seed-64.perf-script.txt) and `-F comm,tid,time,event,trace --ns`
#      (seed-64.perf-script-ns.txt); the perf.data is kept as seed-64.perf.data.  Plus a small
#      capture of the forking wrapper printed with `-F comm,pid,tid,cpu,time,event,trace`
#      (pid/tid column, sched_process_fork): seed-2-fork.perf-script-pid.txt
#   3. trace-cmd report text: seed-64.trace-cmd.txt.  `trace-cmd record -F` cannot run here
#      (set_ftrace_pid is EPERM on this kernel and trace-cmd 3.1.6's forked child then segfaults;
#      it also needs a writable /proc/sys/kernel/ftrace_enabled), so the buffer is set up exactly
#      as in 1. (instance, mono clock, set_event_pid) and saved with `trace-cmd extract -B`,
#      then printed with `trace-cmd report`.  Because the file holds an instance buffer, every
#      report line starts with the instance name ("ptreplay_text: ").
# Files above 2 MB are compressed with zstd -19 (the readers open .zst transparently).
# Tracefs: only a private instance is used and removed at the end, so the global tracing
# settings (current_tracer, trace_clock, options) are never changed.  trace-cmd extract writes
# the top-level tracing_on (to 0) and resets top-level event filters; tracing_on is restored.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/data/text}
BIN=${SEED_LOOP:-/tmp/seed_loop}
T=/sys/kernel/tracing
INAME=ptreplay_text
INST=$T/instances/$INAME
SYSCALLS="mmap munmap mremap brk madvise mprotect exit_group"

mkdir -p "$OUT"
exec > >(tee "$OUT/capture.log") 2>&1          # the workloads' printed final VmPTE etc.
echo "capture_text.sh on $(uname -r), $(perf --version), $(trace-cmd --version 2>&1 | grep -m1 'trace-cmd version')"
gcc -O2 -o "$BIN" "$ROOT/workloads/seed_loop.c"
WORK=$(mktemp -d)
cleanup() { [ -d "$INST" ] && { echo 0 > "$INST/tracing_on"; rmdir "$INST"; }; rm -rf "$WORK"; }
trap cleanup EXIT

# tracefs event names, "system:event" form
EVENTS="exceptions:page_fault_user exceptions:page_fault_kernel"
for s in $SYSCALLS; do EVENTS="$EVENTS syscalls:sys_enter_$s syscalls:sys_exit_$s"; done
EVENTS="$EVENTS sched:sched_process_fork sched:sched_process_exec sched:sched_process_exit mmap:exit_mmap"

# --- helpers ---------------------------------------------------------------------------------
# new_instance TGID: a private instance with tracing off, mono clock, the events, event-fork.
new_instance() {
    mkdir "$INST"
    echo 0 > "$INST/tracing_on"
    echo mono > "$INST/trace_clock"
    echo 8192 > "$INST/buffer_size_kb"
    echo "$1" > "$INST/options/record-tgid"
    echo 1 > "$INST/options/event-fork"
    for e in $EVENTS; do echo "$e" >> "$INST/set_event"; done
    : > "$INST/trace"
}
# trace_stopped CMD...: start CMD stopped, trace only its pid (event-fork adds its children),
# resume it and wait for it.  Tracing is on only while CMD runs.
trace_stopped() {
    bash -c 'kill -STOP $$; exec "$@"' _ "$@" > "$WORK/stdout" &
    local pid=$!
    while [ "$(awk '{print $3}' /proc/$pid/stat)" != T ]; do sleep 0.01; done
    echo "$pid" > "$INST/set_event_pid"
    echo 1 > "$INST/tracing_on"
    kill -CONT "$pid"
    wait "$pid"
    echo 0 > "$INST/tracing_on"
    cat "$WORK/stdout"
}

# --- 1. ftrace --------------------------------------------------------------------------------
echo "== ftrace: seed_loop 1 64 1, trace file"
new_instance 0
trace_stopped "$BIN" 1 64 1
cat "$INST/trace" > "$OUT/seed-64.ftrace.txt"
rmdir "$INST"

echo "== ftrace: record-tgid, sh -c 'seed_loop 1 2 1; true', trace_pipe"
new_instance 1
cat "$INST/trace_pipe" > "$OUT/seed-2-tgid.trace_pipe.txt" &
READER=$!
trace_stopped sh -c "$BIN 1 2 1; true"
sleep 0.5; kill "$READER"; wait "$READER" || true
rmdir "$INST"

# --- 2. perf script ---------------------------------------------------------------------------
echo "== perf record"
PERF_EVENTS=$(echo $EVENTS | tr ' ' ',')
perf record -q -z -k CLOCK_MONOTONIC -e "$PERF_EVENTS" -o "$OUT/seed-64.perf.data" -- "$BIN" 1 64 1 | tee "$WORK/perf.out"
perf script -i "$OUT/seed-64.perf.data" > "$OUT/seed-64.perf-script.txt"
perf script -i "$OUT/seed-64.perf.data" -F comm,tid,time,event,trace --ns > "$OUT/seed-64.perf-script-ns.txt" 2>/dev/null
echo "== perf record: sh -c 'seed_loop 1 2 1; true', -F comm,pid,tid,cpu,time,event,trace"
perf record -q -z -k CLOCK_MONOTONIC -e "$PERF_EVENTS" -o "$WORK/fork.perf.data" -- sh -c "$BIN 1 2 1; true"
perf script -i "$WORK/fork.perf.data" -F comm,pid,tid,cpu,time,event,trace > "$OUT/seed-2-fork.perf-script-pid.txt" 2>/dev/null

# --- 3. trace-cmd -----------------------------------------------------------------------------
echo "== trace-cmd: seed_loop 1 64 1, extract + report"
new_instance 0
trace_stopped "$BIN" 1 64 1
TOP_ON=$(cat "$T/tracing_on")
trace-cmd extract -B "$INAME" -o "$WORK/trace.dat" > /dev/null 2>&1
echo "$TOP_ON" > "$T/tracing_on"
[ -d "$INST" ] && rmdir "$INST"
trace-cmd report -i "$WORK/trace.dat" > "$OUT/seed-64.trace-cmd.txt"

# --- compress what is too big for the repository ----------------------------------------------
for f in "$OUT"/*.txt; do
    if [ "$(stat -c %s "$f")" -gt 2000000 ]; then zstd -q -19 -f --rm "$f"; fi
done
ls -l "$OUT"
