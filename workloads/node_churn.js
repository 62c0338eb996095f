// Buffer and object churn in node, for launch and attach captures.
//
//   node --expose-gc workloads/node_churn.js ROUNDS   ROUNDS rounds, then "final VmPTE: N kB"
//   node --expose-gc workloads/node_churn.js 0        forever ("ready" once warmed up), for attach
//
// Each round allocates 64 Buffers of 256 KiB (outside the V8 heap: malloc/mmap), 50,000 small
// objects (V8 new and old space), keeps a few Buffers of the last five rounds and forces a GC,
// which gives V8 pages back (munmap, madvise).  A counted run ends by SIGKILL 20 ms after its
// line: node's own exit tears the V8 heap down first, which would move VmPTE after the line the
// capture's truth is checked against.
"use strict";
const fs = require("fs");
const rounds = Number(process.argv[2] || 20);

function round(r, keep) {
  const bufs = [];
  for (let i = 0; i < 64; i++) bufs.push(Buffer.alloc(256 * 1024, r & 0xff));
  const objs = [];
  for (let i = 0; i < 50000; i++) objs.push({ i, s: "x" + i, a: [i, r] });
  keep.push(bufs.slice(0, 4));
  if (keep.length > 5) keep.shift();
  global.gc();
}

function vmpteKb() {
  return fs.readFileSync("/proc/self/status", "utf8").match(/VmPTE:\s+(\d+) kB/)[1];
}

const keep = [];
if (rounds > 0) {
  for (let r = 0; r < rounds; r++) round(r, keep);
  console.log(`final VmPTE: ${vmpteKb().padStart(8)} kB`);
  setTimeout(() => process.kill(process.pid, "SIGKILL"), 20);
} else {
  for (let r = 0; r < 5; r++) round(r, keep);
  console.log("ready");
  let r = 5;
  setInterval(() => round(r++, keep), 20);
}
