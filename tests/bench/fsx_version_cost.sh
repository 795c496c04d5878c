#!/usr/bin/env bash
# Version cost (issue 10): fsx on one file on an objfs mount of a store created with
# `objfs init --keep-all 10m`, then the store's size before and after `objfs gc --now`
# against the bytes fsx wrote, and the live file checked byte for byte.
#
#   * fsx (xfstests' ltp/fsx.c) runs N operations (default 100,000) on one file of at most
#     32 MiB (-l), operations up to 64 KiB (fsx's default), every op the filesystem supports:
#     read, write, mapread, mapwrite (msync: a version each), truncate. Operations objfs does
#     not have (fallocate, punch/zero/collapse/insert range, clone/dedupe/copy/exchange range,
#     atomic writes) are turned off by flag, so the run is the same on every filesystem.
#   * Each operation fsx prints (-p 1) is timestamped as it arrives, so the bytes written
#     within the retention window before gc are known: writes and mapwrites, byte for byte
#     as fsx issued them (a truncate writes nothing).
#   * The store's size is `du -sb` of the store directory (volumes, sled, metadata log), and
#     the volume bytes `objfs status --json` reports, before gc and after
#     `objfs gc --now --delay 0` (retention pass, blob reclaim, compaction of sealed volumes
#     at least half garbage).
#   * The same fsx run (same seed, same flags) on a native directory gives the reference
#     file; after a remount (a fresh process, cold caches) the objfs file must equal it.
#     fsx itself compares every read against its model during the run.
#
# Usage: tests/bench/fsx_version_cost.sh [WORKDIR]
# Environment: FSX (a built fsx binary), or XFSTESTS_SRC (an xfstests checkout: ltp/fsx.c is
#   built from it; a clone needs network), OBJFS_FSX_OPS (default 100000), OBJFS_FSX_LEN
#   (default 33554432), OBJFS_FSX_SEED (default 1), OBJFS_BENCH_KEEP=1 (keep the work
#   directory), CARGO_TARGET_DIR.
# Needs: cargo, fusermount3, python3, gcc (to build fsx), cmp.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OPS="${OBJFS_FSX_OPS:-100000}"
LEN="${OBJFS_FSX_LEN:-33554432}"
SEED="${OBJFS_FSX_SEED:-1}"
WORK_PREFIX=objfs-fsx
# shellcheck source=tests/bench/mount_setup.sh
. "$ROOT/tests/bench/mount_setup.sh"

if [ -z "${FSX:-}" ]; then
    SRC="${XFSTESTS_SRC:-$WORK/xfstests}"
    if [ ! -f "$SRC/ltp/fsx.c" ]; then
        echo "== cloning xfstests (set FSX or XFSTESTS_SRC to skip)"
        git clone -q --depth 1 https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git "$SRC"
    fi
    B="$WORK/fsx-build"
    mkdir -p "$B"
    cp "$SRC/ltp/fsx.c" "$SRC/src/global.h" "$SRC/src/statx.h" "$B/"
    # The few configure results fsx.c needs, instead of running xfstests' configure.
    for h in SYS_TYPES_H SYS_STAT_H SYS_STATVFS_H SYS_TIME_H SYS_IOCTL_H SYS_WAIT_H \
        MALLOC_H DIRENT_H STDLIB_H UNISTD_H ERRNO_H STRING_H SYS_FCNTL_H TIME_H \
        LINUX_FALLOC_H COPY_FILE_RANGE; do
        echo "#define HAVE_$h 1"
    done >"$B/config.h"
    gcc -O2 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I"$B" -include getopt.h \
        -include sys/param.h -include assert.h -o "$B/fsx" "$B/fsx.c"
    FSX="$B/fsx"
fi

# Every operation objfs does not have is off by flag (a run is the same on any filesystem).
FSX_FLAGS=(-p 1 -N "$OPS" -l "$LEN" -S "$SEED" -a -F -H -z -C -I -E -J -B -0 -K -u)

echo "== fsx on a native directory (the reference file)"
(cd "$NATIVE" && "$FSX" "${FSX_FLAGS[@]}" -P "$NATIVE" "$NATIVE/file" >"$WORK/native.out") ||
    { tail -20 "$WORK/native.out"; exit 1; }

echo "== objfs init --keep-all 10m; mount"
"$BIN" init --keep-all 10m "$STORE" >/dev/null
"$BIN" mount "$STORE" "$MNT" --log-file "$LOG"

echo "== fsx: $OPS operations on a file of at most $LEN bytes, on the mount"
START=$(date +%s.%N)
set +e
(cd "$WORK" && "$FSX" "${FSX_FLAGS[@]}" -P "$WORK" "$MNT/file") | python3 -c '
import sys, time
# Each line of fsx -p 1: "<n> <op> 0x<start> thru 0x<end> (0x<len> bytes) ..." for reads,
# writes and mapwrites; "<n> trunc from 0x<a> to 0x<b>" for truncates.
for line in sys.stdin:
    f = line.split()
    if len(f) > 1 and f[0].isdigit():
        n = 0
        if f[1] in ("write", "mapwrite"):
            n = int(f[5].strip("()"), 16)
        print(f"{time.time():.3f} {f[1]} {n}", flush=False)
    elif line.strip():
        print("#", line.rstrip())
' >"$WORK/ops.log"
STATUS=("${PIPESTATUS[@]}")
set -e
END=$(date +%s.%N)
if [ "${STATUS[0]}" != 0 ]; then
    echo "fsx failed (exit ${STATUS[0]}):"
    grep '^#' "$WORK/ops.log" | tail -30
    exit 1
fi

size_of() { du -sb "$STORE" | cut -f1; }
status_field() {
    "$BIN" status --json "$STORE" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}
# One measurement: "<gc time> <store bytes before> <after> <volume bytes before> <after>
# <versions before> <after>".
measure_gc() {
    local b vb nb at
    b=$(size_of)
    vb=$(status_field volume_bytes)
    nb=$(status_field versions)
    at=$(date +%s.%N)
    "$BIN" gc "$STORE" --now --delay 0 -q >/dev/null
    echo "$at $b $(size_of) $vb $(status_field volume_bytes) $nb $(status_field versions)"
}

echo "== gc at once (every version is inside the window)"
GC1=$(measure_gc)

echo "== remount (cold) and compare with the reference file"
"$BIN" umount "$MNT"
"$BIN" mount "$STORE" "$MNT" --log-file "$LOG"
if cmp "$MNT/file" "$NATIVE/file"; then
    SAME=yes
else
    SAME=NO
fi
LIVE=$(stat -c %s "$MNT/file")

GC2=""
if [ "${OBJFS_FSX_SECOND_GC:-1}" = 1 ]; then
    # Wait until the 10-minute window starts at the middle of the run: the older half of
    # the versions expires.
    MID=$(python3 -c "print(($START + $END) / 2 + 600)")
    WAIT=$(python3 -c "import time; print(max(0, int($MID - time.time()) + 1))")
    echo "== waiting ${WAIT} s, then gc again (the window then holds the second half of the run)"
    sleep "$WAIT"
    GC2=$(measure_gc)
    if ! cmp "$MNT/file" "$NATIVE/file"; then
        SAME=NO
    fi
fi
"$BIN" umount "$MNT"
AT_REST=$(size_of)

python3 - "$WORK/ops.log" "$START" "$END" "$LIVE" "$SAME" "$AT_REST" "$OPS" "$GC1" "$GC2" <<'EOF'
import sys
log, start, end, live, same, rest, nops, gc1, gc2 = sys.argv[1:]
start, end = float(start), float(end)
window = 600.0
ops = []
counts = {}
for line in open(log):
    if line.startswith("#"):
        continue
    t, op, n = line.split()
    ops.append((float(t), int(n)))
    counts[op] = counts.get(op, 0) + 1
mib = lambda b: f"{int(b) / 2**20:,.1f} MiB"
total = sum(n for _, n in ops)
print(f"fsx: {int(nops):,} operations in {end - start:,.0f} s (skipped ones not counted: " +
      ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) + ")")
print(f"bytes fsx wrote: {mib(total)}; live file: {mib(live)}")
for name, g in (("gc at once", gc1), ("gc, window = second half", gc2)):
    if not g:
        continue
    at, b, a, vb, va, nb, na = g.split()
    kept = sum(n for t, n in ops if t >= float(at) - window)
    print(f"{name}: written in the window {mib(kept)}; versions {int(nb):,} -> {int(na):,}; "
          f"store (du -sb) {mib(b)} -> {mib(a)}; volume bytes {mib(vb)} -> {mib(va)}; "
          f"store/written {int(b) / max(kept, 1):.2f} before gc, {int(a) / max(kept, 1):.2f} after (target <= 2)")
print(f"store unmounted at the end (du -sb): {mib(rest)}")
print(f"live file equals the reference: {same}")
EOF
[ "$SAME" = yes ]
