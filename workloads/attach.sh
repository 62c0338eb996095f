#!/bin/sh
# Attach-mode captures of running servers: start the server, warm it up, then
# `ptreplay record -p` it while a load runs.  The server keeps running after
# the trace (as a production server would) and is stopped at the end.
#
#   workloads/attach.sh redis  OUT [SECONDS]   redis-server (Debian's, jemalloc) under
#                                              redis-benchmark sets, FLUSHALL, MEMORY PURGE
#   workloads/attach.sh python OUT [SECONDS]   workloads/py_churn.py, attached after ~1 s
#   workloads/attach.sh node   OUT [SECONDS]   workloads/node_churn.js 0, attached once warm
#   workloads/attach.sh jvm    OUT [SECONDS]   workloads/JavaChurn.java (javac into workloads/bin), same
set -eu
what=$1 out=$2 secs=${3:-6}
PTREPLAY=${PTREPLAY:-ptreplay}
case $what in
redis)
    port=6399
    redis-server --port $port --save "" --appendonly no >/dev/null &
    server=$!
    sleep 0.5
    redis-benchmark -p $port -q -n 200000 -d 1024 -t set -r 100000 >/dev/null 2>&1   # state before the trace
    redis-cli -p $port flushall >/dev/null
    ( sleep 0.5
      redis-benchmark -p $port -q -n 300000 -d 2048 -t set -r 150000 >/dev/null 2>&1
      redis-cli -p $port flushall >/dev/null; sleep 0.3
      redis-cli -p $port memory purge >/dev/null; sleep 0.5
      redis-benchmark -p $port -q -n 100000 -d 512 -t set,lpush -r 50000 >/dev/null 2>&1 ) &
    load=$! ;;
python)
    python3 "$(dirname "$0")/py_churn.py" >/dev/null &
    server=$!
    sleep 1
    load= ;;
node)
    node --expose-gc "$(dirname "$0")/node_churn.js" 0 >/dev/null &
    server=$!
    sleep 1.5
    load= ;;
jvm)
    bin=$(dirname "$0")/bin
    mkdir -p "$bin"
    javac -d "$bin" "$(dirname "$0")/JavaChurn.java"
    java -Xms8m -Xmx256m -XX:+UseG1GC -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=20 -cp "$bin" JavaChurn 0 >/dev/null &
    server=$!
    sleep 2
    load= ;;
*)
    echo "usage: $0 redis|python|node|jvm OUT [SECONDS]" >&2; exit 2 ;;
esac
"$PTREPLAY" record ${RECORD_OPTS:-} -o "$out" -p "$server" --duration "$secs"
[ -z "$load" ] || wait "$load"
kill "$server"
wait "$server" 2>/dev/null || true
