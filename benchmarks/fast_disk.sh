#!/usr/bin/env bash
# The disk tier on a drive as fast as an NVMe, where the development VM has only a slow virtual disk:
# a block device backed by memory (a loop device over a file in /dev/shm, with direct I/O, an ext4
# file system on it), the model copied there, then spill-bench placement's disk sweep on that copy.
# O_DIRECT reads and page faults both go through the block layer as on a real drive; what the loop
# device cannot show is a drive's own latency. Needs root (losetup, mount) and memory for the copy.
#
#   benchmarks/fast_disk.sh MODEL.gguf [spill-bench placement flags...]
#   benchmarks/fast_disk.sh /var/tmp/model.gguf --host-limits 25%,50% --disk-io uring,pagecache -t 2
#
# Everything it made is removed at the end, also on Ctrl-C or an error.
set -euo pipefail
[ $# -ge 1 ] || { sed -n 2,10p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
model="$1"
shift
[ -f "$model" ] || { echo "fast_disk: no model file '$model'" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "fast_disk: needs root (losetup, mount)" >&2; exit 2; }
bin="$(cd "$(dirname "$0")/.." && pwd)/build/spill-bench"
[ -x "$bin" ] || { echo "fast_disk: build spill-bench first ($bin)" >&2; exit 2; }
size=$(( $(stat -c %s "$model") * 5 / 4 / 1048576 + 64 ))
img="/dev/shm/spill-fast-disk-$$.img"
mnt="$(mktemp -d /tmp/spill-fast-disk.XXXXXX)"
dev=""
cleanup() {
  mountpoint -q "$mnt" && umount "$mnt"
  [ -n "$dev" ] && losetup -d "$dev"
  rm -f "$img"
  rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT
truncate -s "${size}M" "$img"
mkfs.ext4 -q -F "$img"
dev="$(losetup -f --show --direct-io=on "$img")"
mount "$dev" "$mnt"
echo "fast_disk: $dev ($size MiB in /dev/shm) on $mnt, copying the model ..." >&2
cp "$model" "$mnt/"
sync
"$bin" placement -m "$mnt/$(basename "$model")" "$@"
