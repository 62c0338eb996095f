"""A CPython "server" for attach-mode captures: churns lists and buffers until killed.

    python3 workloads/py_churn.py      (prints "ready" once warmed up)

Every 10 ms it allocates 2,000 lists of 50 floats (pymalloc arenas, 256 KiB mmaps) and
2,000 buffers of 1-300 kB (glibc malloc: brk heap and mmaps above its threshold), and
drops half of what it keeps past 20,000 objects (munmap, heap trims).
"""
import random
import time

random.seed(1)
keep = []
for _ in range(3):
    keep.append(bytearray(1 << 20))
print("ready", flush=True)
while True:
    for _ in range(2000):
        keep.append([random.random() for _ in range(50)])
        keep.append(bytearray(random.randint(1000, 300000)))
    if len(keep) > 20000:
        del keep[: len(keep) // 2]
    time.sleep(0.01)
