#!/usr/bin/env bash
# ThreadSanitizer job: builds with -DSPILL_TSAN=ON (clang) into ${SPILL_TSAN_BUILD:-build-tsan} and runs
# the tests whose threads share memory: test_threads (the thread pool; the arena and its adaptors under
# 8 threads of allocate/free; the KV cache with forked sequences in engine steps and under the
# scheduler), continuous batching (test_scheduler: requests submitted, streamed and cancelled from
# other threads while the scheduler's thread steps the engine; test_batch: batched steps on the
# thread pool) and the preload shim over the stand-in CUDA runtime (test_preload*, eight threads among
# them). Any report is a failure (halt_on_error).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${SPILL_TSAN_BUILD:-build-tsan}"
command -v clang >/dev/null || { echo "tsan: clang is needed (apt-get install clang)" >&2; exit 2; }
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPILL_TSAN=ON -DBUILD_TESTING=ON -DSPILL_CUDA=OFF >&2
cmake --build "$build" -j "$(nproc)" --target test_threads test_scheduler test_batch test_preload_prog spill-preload spill-fakecudart >&2
cd "$build"
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
  ctest --output-on-failure -R '^(test_threads|test_scheduler|test_batch|test_preload|test_preload_virtual|test_preload_plain)$'
