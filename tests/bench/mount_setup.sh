# Shared set-up of the mount benchmarks, sourced (not run) by e2e.sh and fsx_version_cost.sh
# after they set ROOT (the repository) and WORK_PREFIX (the name of a new work directory):
# builds the release binary (BIN), makes the work directory (WORK: the script's first
# argument, or a new one under ${TMPDIR:-/tmp}) with STORE, MNT, NATIVE and LOG in it, and
# installs an EXIT trap that always unmounts and removes WORK unless OBJFS_BENCH_KEEP=1.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/objfs"

echo "== building the release binary"
(cd "$ROOT" && cargo build --release -p objfs-mount-tool -q)

WORK="${1:-$(mktemp -d "${TMPDIR:-/tmp}/$WORK_PREFIX.XXXXXX")}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
STORE="$WORK/store"
MNT="$WORK/mnt"
NATIVE="$WORK/native"
LOG="$WORK/objfs.log"
mkdir -p "$MNT" "$NATIVE"

mounted() { grep -q " $MNT " /proc/self/mountinfo; }
cleanup() {
    if mounted; then
        "$BIN" umount "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" 2>/dev/null || true
    fi
    if [ "${OBJFS_BENCH_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
