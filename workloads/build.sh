#!/bin/sh
# Compile every workloads/*.c into a binary of the same name.
#   workloads/build.sh [OUT_DIR]      (default: workloads/bin, git-ignored)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/bin}
mkdir -p "$out"
for src in "$here"/*.c; do
    name=$(basename "$src" .c)
    gcc -O2 -g -Wall -Wextra -fno-omit-frame-pointer -pthread -o "$out/$name" "$src"
done
echo "$out"
