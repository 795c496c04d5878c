#!/usr/bin/env python3
"""syscall_latency.py DIR [N]: the time of each syscall of small-file work, in microseconds.

Creates N files of 4 KiB in a new directory under DIR (a stat of the missing name, then
open(O_CREAT), write, close, each timed), reads them back (open, read, close), renames each,
unlinks each, and prints one line of per-call means: `open_creat=..us write=..us ...`.
Run it on a native directory and on mounts side by side, alternated, and compare medians of
several rounds (docs/BENCHMARKS.md, session 18). One process, so process start-up is not
measured.
"""
import os
import sys
import time

d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
sd = os.path.join(d, f"lat.{os.getpid()}")
os.mkdir(sd)
small = os.urandom(4096)
keys = ["open_creat", "write", "close", "stat_missing", "rename", "open_rd", "read", "close_rd", "unlink"]
acc = {k: 0.0 for k in keys}
pc = time.perf_counter
for i in range(n):
    p = f"{sd}/f{i}"
    t = pc()
    try:
        os.stat(p)
    except FileNotFoundError:
        pass
    t1 = pc()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    t2 = pc()
    os.write(fd, small)
    t3 = pc()
    os.close(fd)
    t4 = pc()
    acc["stat_missing"] += t1 - t
    acc["open_creat"] += t2 - t1
    acc["write"] += t3 - t2
    acc["close"] += t4 - t3
for i in range(n):
    p = f"{sd}/f{i}"
    t = pc()
    fd = os.open(p, os.O_RDONLY)
    t1 = pc()
    os.read(fd, 8192)
    t2 = pc()
    os.close(fd)
    t3 = pc()
    acc["open_rd"] += t1 - t
    acc["read"] += t2 - t1
    acc["close_rd"] += t3 - t2
for i in range(n):
    t = pc()
    os.rename(f"{sd}/f{i}", f"{sd}/g{i}")
    acc["rename"] += pc() - t
for i in range(n):
    t = pc()
    os.unlink(f"{sd}/g{i}")
    acc["unlink"] += pc() - t
os.rmdir(sd)
print(" ".join(f"{k}={v * 1e6 / n:.0f}us" for k, v in acc.items()))
