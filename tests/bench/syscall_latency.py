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


def timed(key, call, *args):
    """Runs call(*args), adds its time to acc[key] and returns what it returned."""
    t = time.perf_counter()
    try:
        return call(*args)
    finally:
        acc[key] += time.perf_counter() - t


def stat_missing(p):
    try:
        os.stat(p)
    except FileNotFoundError:
        pass


for i in range(n):
    p = f"{sd}/f{i}"
    timed("stat_missing", stat_missing, p)
    fd = timed("open_creat", os.open, p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    timed("write", os.write, fd, small)
    timed("close", os.close, fd)
for i in range(n):
    fd = timed("open_rd", os.open, f"{sd}/f{i}", os.O_RDONLY)
    timed("read", os.read, fd, 8192)
    timed("close_rd", os.close, fd)
for i in range(n):
    timed("rename", os.rename, f"{sd}/f{i}", f"{sd}/g{i}")
for i in range(n):
    timed("unlink", os.unlink, f"{sd}/g{i}")
os.rmdir(sd)
print(" ".join(f"{k}={v * 1e6 / n:.0f}us" for k, v in acc.items()))
