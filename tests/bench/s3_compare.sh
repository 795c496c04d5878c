#!/usr/bin/env bash
# S3 mount benchmark: objfs, s3fs and rclone mount on the same local Garage, in one run.
#
# Starts one single-node Garage on 127.0.0.1 (the optimised 2.5.0 binary; set-up modelled on
# scripts/test: one key, one bucket per tool), mounts a bucket of its own with each tool and
# runs the same workload on each mount, in interleaved rounds (round 1: objfs, s3fs, rclone,
# ...; round 2: the same again; ...), then prints the medians per tool, the ratios
# objfs/s3fs and objfs/rclone (throughput, i.e. their time / objfs time) and the targets of
# issue 12.
#
# The workload, per tool and round, each on a fresh mount:
#   1. /work/shared/bench/fsbench.py MNT TOOL SEQ_MIB NFILES (the harness behind the issue's
#      figures): sequential write with fsync, sequential read (page cache dropped, same
#      mount), create of NFILES 4 KiB files, listdir+stat, ls -l, read (page cache dropped,
#      same mount), rename, unlink, cp -r of 640 files of 2 KiB, rm -rf.
#   2. What fsbench lacks, cold reads: NFILES 4 KiB files and a SEQ_MIB file are written,
#      the tool is unmounted and mounted again (rclone's disk cache emptied), the page cache
#      dropped; then the small files are read (cold), read again with the page cache dropped
#      (warm: the mount's own caches only), and the big file is read (cold).
#
# Usage: tests/bench/s3_compare.sh [WORKDIR]   (default: a new directory under ${TMPDIR:-/tmp})
# Environment: S3BENCH_REPS (3), S3BENCH_SEQ_MIB (512), S3BENCH_FILES (300),
#   S3BENCH_TOOLS ("objfs s3fs rclone rclone-full": rclone-full is rclone with
#   --vfs-cache-mode full), S3BENCH_GARAGE (the optimised Garage binary),
#   S3BENCH_FSBENCH (/work/shared/bench/fsbench.py), S3BENCH_BIN (the objfs binary measured;
#   default target/release/objfs, built first unless S3BENCH_NO_BUILD=1), S3BENCH_OBJFS_OPTS (extra `objfs mount`
#   options), S3BENCH_NO_BUILD=1 (use target/release/objfs as it is), S3BENCH_KEEP=1 (keep
#   WORKDIR: logs and raw figures), S3BENCH_BASE_BIN (another objfs binary, e.g. one built
#   from main: measured as the tool "objfs-base" in the same rounds, with a before/after
#   column objfs/objfs-base), S3BENCH_BASE_OPTS (`objfs mount` options of objfs-base only,
#   e.g. --write-through with S3BENCH_BASE_BIN=target/release/objfs: write-back against
#   write-through in one run), S3BENCH_GARAGE_DB (Garage's db_engine: lmdb, or sqlite for a
#   build with only that engine), S3BENCH_SKIP_FSBENCH=1 (only the cold-read phase).
# Needs root (page cache drops, FUSE mounts), python3, s3fs and rclone (apt-get install -y s3fs
# rclone). Everything is unmounted and Garage stopped on exit, however the script exits.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
REPS="${S3BENCH_REPS:-3}"
SEQ_MIB="${S3BENCH_SEQ_MIB:-512}"
NFILES="${S3BENCH_FILES:-300}"
TOOLS="${S3BENCH_TOOLS:-objfs s3fs rclone rclone-full}"
BASE_BIN="${S3BENCH_BASE_BIN:-}"
if [ -n "$BASE_BIN" ]; then
    [ -x "$BASE_BIN" ] || { echo "error: S3BENCH_BASE_BIN $BASE_BIN is not executable" >&2; exit 2; }
    TOOLS="objfs-base $TOOLS"
fi
GARAGE="${S3BENCH_GARAGE:-$HOME/.cache/objfs-ci/garage/2.5.0/bin/garage}"
FSBENCH="${S3BENCH_FSBENCH:-/work/shared/bench/fsbench.py}"
GARAGE_DB="${S3BENCH_GARAGE_DB:-lmdb}"
SKIP_FSBENCH="${S3BENCH_SKIP_FSBENCH:-0}"
OBJFS_OPTS="${S3BENCH_OBJFS_OPTS:-}"
BASE_OPTS="${S3BENCH_BASE_OPTS:-$OBJFS_OPTS}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${S3BENCH_BIN:-$TARGET_DIR/release/objfs}"

for tool in python3 s3fs rclone; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed (apt-get install -y s3fs rclone)" >&2; exit 2; }
done
[ -x "$GARAGE" ] || {
    echo "error: no Garage binary at $GARAGE (S3BENCH_GARAGE); build the optimised one once with" >&2
    echo "  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo install --locked \\" >&2
    echo "    --no-default-features --features bundled-libs,lmdb garage --version 2.5.0 --root ~/.cache/objfs-ci/garage/2.5.0" >&2
    echo "  (about 50 minutes on 2 cores), or point S3BENCH_GARAGE at the debug build of scripts/test" >&2
    echo "  with S3BENCH_GARAGE_DB=sqlite" >&2
    exit 2
}
[ -f "$FSBENCH" ] || { echo "error: no fsbench.py at $FSBENCH (S3BENCH_FSBENCH)" >&2; exit 2; }
if [ "${S3BENCH_NO_BUILD:-0}" != 1 ]; then
    echo "== building the release binary"
    (cd "$ROOT" && cargo build --release -p objfs-mount-tool -q)
fi

WORK="${1:-$(mktemp -d "${TMPDIR:-/tmp}/objfs-s3bench.XXXXXX")}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
RESULTS="$WORK/results.txt"
: >"$RESULTS"
GARAGE_PID=""
RCLONE_PID=""

mounted() { grep -q " $1 " /proc/self/mountinfo; }
mnt_of() { echo "$WORK/mnt-$1"; }
bucket_of() { echo "bench-$1"; }
bin_of() { if [ "$1" = objfs-base ]; then echo "$BASE_BIN"; else echo "$BIN"; fi; }

# --- unmount everything and stop Garage, always ----------------------------------------------------
cleanup() {
    local status=$?
    local tool m
    for tool in $TOOLS; do
        m=$(mnt_of "$tool")
        if mounted "$m"; then
            case "$tool" in objfs | objfs-base) "$(bin_of "$tool")" umount "$m" 2>/dev/null || true ;; esac
            mounted "$m" && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
        fi
    done
    if [ -n "$RCLONE_PID" ]; then kill "$RCLONE_PID" 2>/dev/null || true; wait "$RCLONE_PID" 2>/dev/null || true; fi
    if [ -n "$GARAGE_PID" ]; then kill "$GARAGE_PID" 2>/dev/null || true; wait "$GARAGE_PID" 2>/dev/null || true; fi
    if [ "$status" -ne 0 ]; then
        for log in "$WORK"/*.log; do
            [ -f "$log" ] || continue
            echo "== last lines of $(basename "$log")" >&2
            tail -n 15 "$log" >&2 || true
        done
    fi
    if [ "${S3BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "== kept $WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
wait_port() {
    local port=$1 what=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "error: $what did not start listening on 127.0.0.1:$port" >&2
    return 1
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# --- Garage: one node, one key, a bucket per tool ------------------------------------------------
S3_PORT=$(free_port)
RPC_PORT=$(free_port)
ADMIN_PORT=$(free_port)
GARAGE_CONF="$WORK/garage.toml"
cat >"$GARAGE_CONF" <<EOF
metadata_dir = "$WORK/garage-meta"
data_dir = "$WORK/garage-data"
db_engine = "$GARAGE_DB"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
EOF
garage() { "$GARAGE" -c "$GARAGE_CONF" "$@"; }
"$GARAGE" -c "$GARAGE_CONF" server >"$WORK/garage.log" 2>&1 &
GARAGE_PID=$!
wait_port "$RPC_PORT" "garage (rpc)"
wait_port "$S3_PORT" "garage (s3)"
NODE_ID=""
for _ in $(seq 1 100); do
    NODE_ID=$(garage node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$NODE_ID" ] && break
    sleep 0.2
done
[ -n "$NODE_ID" ] || { echo "error: garage has no node id" >&2; exit 1; }
{
    garage layout assign -z dc1 -c 10G "$NODE_ID"
    garage layout apply --version 1
} >"$WORK/garage-setup.log" 2>&1
KEY_INFO=$(garage key create bench 2>>"$WORK/garage-setup.log")
KEY_ID=$(printf '%s\n' "$KEY_INFO" | sed -n 's/^Key ID:[[:space:]]*//p' | head -n 1)
SECRET=$(printf '%s\n' "$KEY_INFO" | sed -n 's/^Secret key:[[:space:]]*//p' | head -n 1)
[ -n "$KEY_ID" ] && [ -n "$SECRET" ] || { echo "error: could not read the key garage made" >&2; exit 1; }
for tool in $TOOLS; do
    garage bucket create "$(bucket_of "$tool")" >>"$WORK/garage-setup.log" 2>&1
    garage bucket allow --read --write --owner "$(bucket_of "$tool")" --key bench >>"$WORK/garage-setup.log" 2>&1
    mkdir -p "$(mnt_of "$tool")"
done
ENDPOINT="http://127.0.0.1:$S3_PORT"

# Credentials, one file per tool, none in argv.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE \
    AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
export AWS_EC2_METADATA_DISABLED=true
export AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials"
export AWS_CONFIG_FILE="$WORK/aws-config"
: >"$AWS_CONFIG_FILE"
printf '[bench]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$KEY_ID" "$SECRET" >"$AWS_SHARED_CREDENTIALS_FILE"
S3FS_PASSWD="$WORK/s3fs-passwd"
(umask 077 && printf '%s:%s\n' "$KEY_ID" "$SECRET" >"$S3FS_PASSWD")
RCLONE_CONF="$WORK/rclone.conf"
(umask 077 && cat >"$RCLONE_CONF" <<EOF
[garage]
type = s3
provider = Other
access_key_id = $KEY_ID
secret_access_key = $SECRET
endpoint = $ENDPOINT
region = garage
force_path_style = true
EOF
)
echo "== garage $("$GARAGE" --version 2>/dev/null | head -n 1 | awk '{print $2}') at $ENDPOINT ($GARAGE_DB, one node); work directory $WORK"

# --- mounting each tool ----------------------------------------------------------------------------
wait_mounted() {
    local m=$1 what=$2
    for _ in $(seq 1 150); do
        if mounted "$m"; then return 0; fi
        sleep 0.2
    done
    echo "error: $what did not mount at $m" >&2
    return 1
}
do_mount() { # do_mount TOOL
    local tool=$1 m bucket
    m=$(mnt_of "$tool")
    bucket=$(bucket_of "$tool")
    case "$tool" in
    objfs | objfs-base)
        # shellcheck disable=SC2086
        "$(bin_of "$tool")" mount "s3://$bucket" "$m" --endpoint "$ENDPOINT" --region garage --profile bench \
            --log-file "$WORK/$tool.log" $(if [ "$tool" = objfs-base ]; then echo "$BASE_OPTS"; else echo "$OBJFS_OPTS"; fi)
        ;;
    s3fs)
        s3fs "$bucket" "$m" -o "passwd_file=$S3FS_PASSWD,url=$ENDPOINT,use_path_request_style,endpoint=garage,logfile=$WORK/s3fs.log"
        wait_mounted "$m" s3fs
        ;;
    rclone | rclone-full)
        local mode=writes
        [ "$tool" = rclone-full ] && mode=full
        rm -rf "$WORK/rclone-cache-$tool"
        # The environment's AWS_CA_BUNDLE (if any) breaks rclone's HTTP client; the endpoint is
        # plain http on loopback.
        env -u AWS_CA_BUNDLE rclone mount "garage:$bucket" "$m" --config "$RCLONE_CONF" --vfs-cache-mode "$mode" \
            --cache-dir "$WORK/rclone-cache-$tool" --log-file "$WORK/$tool.log" &
        RCLONE_PID=$!
        wait_mounted "$m" "$tool"
        ;;
    esac
}
do_umount() { # do_umount TOOL: returns once everything is uploaded and the mount is gone
    local tool=$1 m
    m=$(mnt_of "$tool")
    case "$tool" in
    objfs | objfs-base)
        "$(bin_of "$tool")" umount "$m"
        # `objfs umount` waits for the mount process; make sure it is gone (its write-back
        # journal is locked until it is) before the next mount of the same bucket.
        for _ in $(seq 1 600); do pgrep -f "mount s3://$(bucket_of "$tool") " >/dev/null || break; sleep 0.1; done
        ;;
    s3fs)
        umount "$m"
        # s3fs's daemon exits after the unmount; wait for it so that the next mount is clean.
        for _ in $(seq 1 150); do pgrep -f "^s3fs $(bucket_of s3fs) " >/dev/null || break; sleep 0.2; done
        ;;
    rclone | rclone-full)
        umount "$m"
        wait "$RCLONE_PID" 2>/dev/null || true
        RCLONE_PID=""
        ;;
    esac
}

# rclone uploads after close, in the background (an fsync reaches only its disk cache), and
# whatever is not uploaded when it is unmounted waits in that cache for the next mount: wait
# until the bucket holds all the files of the cold phase before unmounting.
wait_uploaded() { # wait_uploaded TOOL
    case "$1" in rclone | rclone-full) ;; *) return 0 ;; esac
    local want=$((NFILES + 1)) bytes=$((NFILES * 4096 + (SEQ_MIB << 20))) got
    for _ in $(seq 1 600); do
        got=$(env -u AWS_CA_BUNDLE rclone size --json --config "$RCLONE_CONF" "garage:$(bucket_of "$1")/cold" 2>/dev/null || true)
        if python3 -c 'import json, sys; d = json.loads(sys.argv[1]); sys.exit(not (d["count"] == int(sys.argv[2]) and d["bytes"] == int(sys.argv[3])))' \
            "${got:-null}" "$want" "$bytes" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    echo "error: $1 did not upload the files of the cold phase (last: $got)" >&2
    return 1
}

# What fsbench.py lacks: reads after a remount. PHASE is "write" or "read".
cold_phase() { # cold_phase PHASE DIR LABEL
    python3 - "$@" "$NFILES" "$SEQ_MIB" <<'PY'
import os, sys, time
phase, d, label, n, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
w = os.path.join(d, "cold")
def drop():
    os.sync()
    try: open("/proc/sys/vm/drop_caches", "w").write("3")
    except OSError: pass
def timed(name, f):
    t = time.perf_counter(); f(); print(f"{label} {name} {time.perf_counter()-t:.3f}", flush=True)
if phase == "write":
    os.makedirs(w)
    small = os.urandom(4096)
    for i in range(n):
        with open(f"{w}/f{i}", "wb") as fh: fh.write(small)
    blk = os.urandom(1 << 20)
    with open(f"{w}/big", "wb") as fh:
        for _ in range(size): fh.write(blk)
        fh.flush(); os.fsync(fh.fileno())
else:
    def readall():
        for i in range(n):
            with open(f"{w}/f{i}", "rb") as fh:
                if len(fh.read()) != 4096: sys.exit(f"short read of {w}/f{i}")
    drop()
    timed(f"cold_read_{n}x4KiB", readall); drop()
    timed(f"warm_read_{n}x4KiB", readall); drop()
    def seq_read():
        got = 0
        with open(f"{w}/big", "rb", buffering=0) as fh:
            while True:
                b = fh.read(1 << 20)
                if not b: break
                got += len(b)
        if got != size << 20: sys.exit(f"read {got} bytes of {w}/big")
    timed(f"cold_seq_read_{size}MiB", seq_read)
    for i in range(n): os.unlink(f"{w}/f{i}")
    os.unlink(f"{w}/big"); os.rmdir(w)
PY
}

for rep in $(seq 1 "$REPS"); do
    echo "== round $rep of $REPS"
    for tool in $TOOLS; do
        m=$(mnt_of "$tool")
        drop_caches
        do_mount "$tool"
        if [ "$SKIP_FSBENCH" != 1 ]; then
            python3 "$FSBENCH" "$m" "$tool" "$SEQ_MIB" "$NFILES" | tee -a "$RESULTS"
        fi
        cold_phase write "$m" "$tool"
        wait_uploaded "$tool"
        do_umount "$tool"
        do_mount "$tool"
        cold_phase read "$m" "$tool" | tee -a "$RESULTS"
        do_umount "$tool"
    done
done

# --- the table -----------------------------------------------------------------------------------
echo
echo "== medians of $REPS rounds; ratios are throughput (the other tool's time / objfs time)"
python3 - "$RESULTS" "$SEQ_MIB" "$NFILES" "$TOOLS" <<'PY'
import sys, statistics
path, size, n, tools = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
t = {}
for line in open(path):
    parts = line.split()
    if len(parts) == 3:
        t.setdefault((parts[1], parts[0]), []).append(float(parts[2]))
# metric key, shown name, units of work, unit name, target against s3fs, target against rclone
rows = [
    ("create_%dx4KiB" % n, "create 4 KiB", n, "files/s", 10, 1),
    ("cp_r_640files", "cp -r 640 files", 640, "files/s", 10, 1),
    ("read_%dx4KiB" % n, "read 4 KiB (fsbench)", n, "files/s", None, None),
    ("cold_read_%dx4KiB" % n, "read 4 KiB cold", n, "files/s", 20, None),
    ("warm_read_%dx4KiB" % n, "read 4 KiB warm", n, "files/s", None, 1),
    ("rename_%d" % n, "rename", n, "files/s", 10, None),
    ("unlink_%d" % n, "unlink", n, "files/s", None, None),
    ("listdir_stat_%d" % n, "listdir+stat", n, "files/s", None, None),
    ("ls_l_%d" % n, "ls -l", n, "entries/s", None, None),
    ("rm_rf_tree", "rm -rf 640 files", 640, "files/s", None, None),
    ("seq_write_%dMiB" % size, "seq write + fsync", size, "MiB/s", 1.5, None),
    ("seq_read_%dMiB" % size, "seq read (same mount)", size, "MiB/s", None, None),
    ("cold_seq_read_%dMiB" % size, "seq read cold", size, "MiB/s", None, 1.5),
]
def med(key, tool):
    v = t.get((key, tool))
    return statistics.median(v) if v else None
def rate(units, s):
    return "-" if s is None else ("%.0f" % (units / s) if units / s >= 10 else "%.1f" % (units / s))
def ratio(a, b):
    return None if a is None or b is None or a == 0 else b / a
base = "objfs-base" in tools
head = ["metric", "unit"] + tools + ["objfs/s3fs", "target", "objfs/rclone", "target"]
head += ["objfs/objfs-base"] if base else []
print("| " + " | ".join(head) + " |")
print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
for key, name, units, unit, ts3, trc in rows:
    o = med(key, "objfs")
    cells = [name, unit] + [rate(units, med(key, tool)) + (" (%.2f s)" % med(key, tool) if med(key, tool) else "") for tool in tools]
    for other, target in (("s3fs", ts3), ("rclone", trc)):
        r = ratio(o, med(key, other))
        cells.append("-" if r is None else "%.2fx" % r)
        if target is None:
            cells.append("")
        elif r is None:
            cells.append(">= %gx" % target)
        else:
            cells.append(">= %gx %s" % (target, "met" if r >= target else "**MISSED**"))
    if base:
        r = ratio(o, med(key, "objfs-base"))
        cells.append("-" if r is None else "%.2fx" % r)
    print("| " + " | ".join(cells) + " |")
print()
print("seconds of each round (%s):" % "; ".join(tools))
for key, name, *_ in rows:
    print("  %-24s " % name + "; ".join(",".join("%.2f" % x for x in t.get((key, tool), [])) for tool in tools))
PY
