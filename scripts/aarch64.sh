#!/usr/bin/env bash
# The aarch64 (Grace) build on an x86-64 Debian machine, and its tests under qemu-aarch64:
#   1. Debian's cross compiler (gcc-aarch64-linux-gnu), qemu-user and the :arm64 dev packages the
#      build needs (multiarch: dpkg --add-architecture arm64), only those that are missing;
#   2. binfmt_misc told to run aarch64 programs with qemu, for the programs that tests start
#      themselves (spill-generate, spill-plan, spill-bench); ctest starts the test programs through
#      CMAKE_CROSSCOMPILING_EMULATOR (cmake/aarch64-linux-gnu.cmake);
#   3. the build into ${SPILL_BUILD:-build-aarch64}, warnings as errors, and the test suite with
#      ctest. test_tokens compares stories260K's greedy tokens, with 1 thread and 2, against the ones
#      x86-64 gave (tests/fixtures/greedy_tokens.tsv); test_smollm2 and test_tokens_smollm2 do the
#      same for SmolLM2-135M when the default model is in the cache (scripts/fetch-model.sh).
# Left out on aarch64: spill-server and spill-bench serve (libmicrohttpd, libcurl: their :arm64 dev
# packages pull in a large part of an arm64 system), io_uring for the disk tier (qemu-user has no
# io_uring; the tier reads with pread), CUDA. Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${SPILL_BUILD:-build-aarch64}"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
start=$(date +%s)

# ---- 1. packages ----
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "aarch64: dpkg --add-architecture arm64" >&2
  $sudo dpkg --add-architecture arm64
  updated=0
else
  updated=1
fi
need=()
for p in cmake pkg-config make gcc-aarch64-linux-gnu qemu-user qemu-user-binfmt \
         libc6-dev:arm64 libnuma-dev:arm64 libhwloc-dev:arm64 libpcre2-dev:arm64 libcmocka-dev:arm64; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ] || [ "$updated" = 0 ]; then
  echo "aarch64: installing ${need[*]:-(nothing; package lists for arm64)}" >&2
  $sudo apt-get update -qq
  [ "${#need[@]}" -eq 0 ] || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# ---- 2. binfmt_misc: aarch64 programs started by the tests run under qemu too ----
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  $sudo sh -c 'cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register'
fi

# ---- 3. build and test ----
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_TESTING=ON -DSPILL_CUDA=OFF -DSPILL_SERVER=OFF -DCMAKE_C_FLAGS=-Werror "$@" >&2
cmake --build "$build" -j "$(nproc)" >&2
# e_machine of the ELF header: 183 (0xb7) is aarch64
[ "$(od -An -tx1 -j18 -N2 "$build/spill-generate" | tr -d ' ')" = b700 ] || { echo "aarch64: $build/spill-generate is not an aarch64 program" >&2; exit 1; }
# a program started directly (through binfmt_misc) must run, or the tests that start one would fail
# for a reason that is not theirs
"$build/spill-info" --help >/dev/null 2>&1 || {
  echo "aarch64: $build/spill-info does not start through binfmt_misc (/proc/sys/fs/binfmt_misc/qemu-aarch64)" >&2
  exit 1
}
echo "aarch64: built in $(( $(date +%s) - start )) s; running the tests under qemu-aarch64" >&2
# Emulation is 10-20 times slower than the machine: the tests that run SmolLM2 many times over
# (every policy at several budgets, 20 prompts against llama.cpp, speculative decoding, the disk
# tier) are left out here (x86-64 runs them); SmolLM2's own token check (test_tokens_smollm2, 1 and 2
# threads) stays. test_spec (speculative decoding on stories260K, hundreds of 2-thread steps) ran past
# its 900 s under qemu on the shared 2-core VM (2026-12-03; 490 s natively there at the time) and is
# left out too. SPILL_AARCH64_ALL=1 runs every test.
skip='^(test_policy_e2e|test_smollm2|test_spec_smollm2|test_disk_smollm2|test_spec)$'
if [ "${SPILL_AARCH64_ALL:-0}" = 1 ]; then skip='^$'; else
  echo "aarch64: left out under qemu (x86-64 runs them): test_policy_e2e test_smollm2 test_spec_smollm2 test_disk_smollm2 (SmolLM2 many times over), test_spec (too slow emulated)" >&2
fi
rc=0
(cd "$build" && ctest --output-on-failure -j "$(nproc)" -E "$skip") || rc=$?
grep -h "^SKIPPED" "$build/Testing/Temporary/LastTest.log" 2>/dev/null | sort -u | sed 's/^/aarch64: /' >&2 || true
grep -h "as on x86-64" "$build/Testing/Temporary/LastTest.log" 2>/dev/null | sed 's/^/aarch64: /' >&2 || true
echo "aarch64: done in $(( $(date +%s) - start )) s (rc $rc)" >&2
exit $rc
