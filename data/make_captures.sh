#!/bin/sh
# Re-create the bundled captures in data/ with `ptreplay record` (needs root,
# perf and tracefs; jemalloc from `apt-get install libjemalloc2`).
#
#   data/make_captures.sh [NAME...]     (default: all of them)
#
# Commands run from the repository root with relative paths, so command.txt
# reads the same on every machine.  Each capture's stdout.txt is what the
# program printed (its final VmPTE line is the truth the tests compare with).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
workloads/build.sh workloads/bin >/dev/null
PTREPLAY=${PTREPLAY:-ptreplay}
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

capture() {   # capture NAME CMD [ARGS...]
    name=$1; shift
    if [ -n "$only" ] && ! echo " $only " | grep -q " $name "; then return; fi
    dir=data/$name
    rm -rf "$dir" "$dir.stdout.tmp"
    echo "== $name: $*" >&2
    "$PTREPLAY" record ${RECORD_OPTS:-} -o "$dir" -- "$@" > "$dir.stdout.tmp"
    sed '$d' "$dir.stdout.tmp" > "$dir/stdout.txt"    # last line is record's own: the directory
    rm "$dir.stdout.tmp"
}

only="$*"
capture seed-2m          workloads/bin/seed_loop 4 1500 1
capture seed-1m-halves   workloads/bin/seed_loop 4 1500 2
capture jemalloc-churn   env LD_PRELOAD=$JEMALLOC MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0 \
                         workloads/bin/alloc_churn 60 48 1
capture threads-zap      workloads/bin/threads_zap 16 3 40000 1500
capture mixed-vma        workloads/bin/mixed_vma /tmp
# a child whose mm the parent's /proc/PID/pagemap reader still holds when it is killed: the
# kernel tears the child's mm down in the reader thread (docs/MODEL.md#exit)
capture mm-holder        workloads/bin/mm_holder 8
# THP `always` (the host's mode, switched for the recording and restored): every 2 MiB is one
# huge-page fault whose end (memcg THP_FAULT_ALLOC) is traced
thp_always() {   # thp_always NAME CMD [ARGS...]
    if [ -n "$only" ] && ! echo " $only " | grep -q " $1 "; then return; fi
    thp=/sys/kernel/mm/transparent_hugepage/enabled
    was=$(sed 's/.*\[\(.*\)\].*/\1/' $thp)
    echo always > $thp
    capture "$@" || { echo "$was" > $thp; exit 1; }
    echo "$was" > $thp
}
thp_always seed-2m-thp-always workloads/bin/seed_loop 4 1500 1
thp_always jemalloc-thp-always env LD_PRELOAD=$JEMALLOC MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0 \
                         workloads/bin/alloc_churn 60 48 1
# with call chains (attribution); the binary is kept next to it: its build id is in the capture
RECORD_OPTS=--call-graph \
capture purge-sites      workloads/bin/purge_sites
# (only when it was just recorded: the binary's build id must be the one in its MMAP2 records)
if [ -z "$only" ] || echo " $only " | grep -q " purge-sites "; then
    cp workloads/bin/purge_sites data/purge-sites/purge_sites
fi
# runtimes, launched: node (V8 heap, Buffers) and a JVM (serial GC)
capture node-launch      node --expose-gc workloads/node_churn.js 20
if [ -z "$only" ] || echo " $only " | grep -q " jvm-launch "; then
    javac -d workloads/bin workloads/JavaChurn.java
fi
capture jvm-launch       java -Xms8m -Xmx256m -XX:+UseG1GC -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=20 -cp workloads/bin JavaChurn 20
# attach mode: servers already running when the trace starts (their start state is snapshot.parquet)
attach() {   # attach NAME SERVER SECONDS
    if [ -n "$only" ] && ! echo " $only " | grep -q " $1 "; then return; fi
    rm -rf "data/$1"
    echo "== $1: attach to $2" >&2
    PTREPLAY=$PTREPLAY RECORD_OPTS=${RECORD_OPTS:-} workloads/attach.sh "$2" "data/$1" "$3" >/dev/null
}
attach redis-attach      redis 8
attach python-attach     python 4
# node and the JVM with --freeze: their threads stop while the start state is read
RECORD_OPTS=--freeze attach node-attach node 4
RECORD_OPTS=--freeze attach jvm-attach jvm 4
du -sh data/* >&2
