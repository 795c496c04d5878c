#!/usr/bin/env bash
# End-to-end benchmark: an objfs mount against the native filesystem on the same disk.
#
# One run measures both side by side and prints a table with ratios (objfs throughput /
# native throughput, i.e. native time / objfs time) and the targets:
#   * 1 GiB sequential write and read, 1 MiB blocks (dd; write ends with fsync; read is cold:
#     page cache dropped when possible, and objfs read through a fresh mount)
#   * 10,000 small files (1 KiB): create, stat, read, delete (each phase cold)
#   * ls -l of a 10,000-entry directory (cold)
#   * cp -r of a tree of 6,400 small files (64 dirs x 100 files, 1-16 KiB; GeeseFS's benchmark)
#
# It builds the release binary itself, mounts with the `objfs` command, and always unmounts
# (trap EXIT). Usage:
#   tests/bench/e2e.sh [WORKDIR]        (default: a new directory under ${TMPDIR:-/tmp})
# Each phase runs on native then on objfs back to back; the set is repeated and the table shows
# medians. Environment: OBJFS_BENCH_REPS (default 3), OBJFS_BENCH_SEQ_MIB (default 1024),
#   OBJFS_BENCH_FILES (default 10000), OBJFS_BENCH_MOUNT_OPTS (extra `objfs mount` options),
#   OBJFS_BENCH_KEEP=1 (keep the work directory), CARGO_TARGET_DIR.
# Needs: cargo, fusermount3, python3, dd. Root is needed only to drop the page cache (the
# run says so when it cannot).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SEQ_MIB="${OBJFS_BENCH_SEQ_MIB:-1024}"
NFILES="${OBJFS_BENCH_FILES:-10000}"
REPS="${OBJFS_BENCH_REPS:-3}"
MOUNT_OPTS="${OBJFS_BENCH_MOUNT_OPTS:-}"
WORK_PREFIX=objfs-bench
# shellcheck source=tests/bench/mount_setup.sh
. "$ROOT/tests/bench/mount_setup.sh"
SRC="$WORK/src-tree"

do_mount() {
    # shellcheck disable=SC2086
    "$BIN" mount --init "$STORE" "$MNT" --log-file "$LOG" $MOUNT_OPTS
}
remount() {
    "$BIN" umount "$MNT"
    do_mount
}

CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ]; then CAN_DROP=1; fi
drop_caches() {
    sync
    if [ "$CAN_DROP" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}
# fresh TARGET: cold caches for the next phase (objfs: a new mount, so its own caches are
# empty too).
fresh() {
    if [ "$1" = objfs ]; then remount; fi
    drop_caches
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

declare -A T   # T[name,target] = seconds of each repetition, space-separated

timeit() { # timeit NAME TARGET CMD...
    local name="$1" tgt="$2"
    shift 2
    local t0 t1 dt
    t0=$(now)
    "$@"
    t1=$(now)
    dt=$(elapsed "$t0" "$t1")
    T[$name,$tgt]="${T[$name,$tgt]:-} $dt"
    printf '   %-12s %-7s %8.3f s\n' "$name" "$tgt" "$dt"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

dir_of() { if [ "$1" = objfs ]; then echo "$MNT"; else echo "$NATIVE"; fi; }

# Small-file phases in python3, so that both sides pay the same per-file overhead and no
# process is forked per file.
smallfiles() { # smallfiles PHASE DIR N
    python3 - "$@" <<'PY'
import os, sys
phase, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = os.urandom(1024)
names = [os.path.join(d, "f%05d" % i) for i in range(n)]
if phase == "create":
    os.makedirs(d, exist_ok=True)
    for p in names:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
elif phase == "stat":
    for p in names:
        if os.stat(p).st_size != 1024:
            sys.exit("bad size: " + p)
elif phase == "read":
    for p in names:
        with open(p, "rb") as f:
            if len(f.read()) != 1024:
                sys.exit("short read: " + p)
elif phase == "delete":
    for p in names:
        os.unlink(p)
    os.rmdir(d)
PY
}

make_src_tree() {
    python3 - "$SRC" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(6400)
for d in range(64):
    dd = os.path.join(root, "d%02d" % d)
    os.makedirs(dd, exist_ok=True)
    for f in range(100):
        with open(os.path.join(dd, "f%03d" % f), "wb") as fh:
            fh.write(rng.randbytes(rng.randint(1024, 16384)))
PY
}

echo "== work directory $WORK (store, mount and native directory on one disk)"
df -h "$WORK" | tail -1
[ "$CAN_DROP" = 1 ] || echo "   (cannot drop the page cache: not root; native reads may be warm)"
do_mount
echo "== objfs $("$BIN" --version | awk '{print $2}') mounted at $MNT"
make_src_tree

# Each phase runs on the native directory and then on the mount, back to back, so both see
# the same background (the disk of a VM varies a lot over minutes); the whole set is repeated
# REPS times and the table shows medians.
both() { # both NAME PREP CMD-TEMPLATE... ; in the template, @D@ is the target directory
    local name="$1" prep="$2"
    shift 2
    local tgt D args a
    for tgt in native objfs; do
        D=$(dir_of $tgt)
        args=()
        for a in "$@"; do args+=("${a//@D@/$D}"); done
        if [ "$prep" = fresh ]; then fresh $tgt; else drop_caches; fi
        timeit "$name" "$tgt" "${args[@]}"
    done
}

for rep in $(seq 1 "$REPS"); do
    echo "== round $rep of $REPS"
    both seq_write fresh dd if=/dev/zero of=@D@/seq bs=1M count="$SEQ_MIB" conv=fsync status=none
    both seq_read fresh dd if=@D@/seq of=/dev/null bs=1M status=none
    rm -f "$NATIVE/seq" "$MNT/seq"
    both create fresh smallfiles create @D@/small "$NFILES"
    both stat fresh smallfiles stat @D@/small "$NFILES"
    both read fresh smallfiles read @D@/small "$NFILES"
    both ls_l fresh sh -c "ls -l '@D@/small' > /dev/null"
    both delete fresh smallfiles delete @D@/small "$NFILES"
    both cp_r_6400 drop cp -r "$SRC" @D@/tree
    for tgt in native objfs; do
        D=$(dir_of $tgt)
        diff -r "$SRC" "$D/tree" >/dev/null || { echo "cp -r copy differs on $tgt" >&2; exit 1; }
        rm -rf "$D/tree"
    done
done

# name | what one unit is | units | target ratio (objfs/native throughput), empty = none
ROWS=(
    "seq_write|MiB/s|$SEQ_MIB|0.6"
    "seq_read|MiB/s|$SEQ_MIB|0.8"
    "create|files/s|$NFILES|0.25"
    "stat|files/s|$NFILES|"
    "read|files/s|$NFILES|"
    "ls_l|entries/s|$NFILES|0.2"
    "delete|files/s|$NFILES|"
    "cp_r_6400|files/s|6400|"
)
echo
echo "| test | native | objfs | objfs/native | target | |"
echo "|---|---:|---:|---:|---:|---|"
for row in "${ROWS[@]}"; do
    IFS='|' read -r name unit units target <<<"$row"
    tn=$(echo "${T[$name,native]}" | median)
    to=$(echo "${T[$name,objfs]}" | median)
    awk -v n="$name" -v u="$unit" -v k="$units" -v tn="$tn" -v to="$to" -v tg="$target" 'BEGIN {
        rn = k / tn; ro = k / to; ratio = tn / to
        verdict = ""
        if (tg != "") verdict = (ratio >= tg) ? "meets" : "MISSES"
        tgs = (tg != "") ? sprintf(">= %.2fx", tg) : "-"
        printf "| %s | %.0f %s (%.2f s) | %.0f %s (%.2f s) | %.2fx | %s | %s |\n", n, rn, u, tn, ro, u, to, ratio, tgs, verdict
    }'
done
echo
echo "medians of $REPS rounds; machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r); page cache dropped: $([ "$CAN_DROP" = 1 ] && echo yes || echo no)"
