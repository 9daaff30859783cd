#!/usr/bin/env bash
# Configure and build into ${SPILL_BUILD:-build}. Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${SPILL_BUILD:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >&2
cmake --build "$build" -j "$(nproc)" >&2
