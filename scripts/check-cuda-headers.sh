#!/usr/bin/env bash
# Compile the C sources that call the CUDA runtime against older toolkits' headers, so that the
# version branches in alloc/cuda_compat.h (CUDA 13 / 12.2-12.9 / before 12.2) all build.
# The headers come from NVIDIA's PyPI wheels (nvidia-cuda-runtime-cu12 / -cu11); nothing is linked
# or run. The installed toolkit (13.x) is covered by the normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SPILL_CACHE:-$HOME/.cache/spill}/cuda-headers"
mkdir -p "$cache"
srcs=(alloc/platform_cuda.c alloc/backend_cuda_managed.c alloc/backend_cuda_device.c kernels/cuda/queue.c)
status=0
for spec in "cu12 12.4.127" "cu11 11.8.89"; do
  set -- $spec
  dir="$cache/$1-$2"
  if [ ! -f "$dir/nvidia/cuda_runtime/include/cuda_runtime_api.h" ]; then
    rm -rf "$dir" "$cache/dl-$1" && mkdir -p "$dir"
    if ! python3 -m pip download -q --no-deps -d "$cache/dl-$1" "nvidia-cuda-runtime-$1==$2" >/dev/null 2>&1; then
      echo "check-cuda-headers: SKIPPED CUDA $2: could not download nvidia-cuda-runtime-$1 from PyPI" >&2
      continue
    fi
    python3 -m zipfile -e "$cache"/dl-$1/*.whl "$dir"
  fi
  for f in "${srcs[@]}"; do
    if ! ${CC:-cc} -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fsyntax-only \
        -I"$dir/nvidia/cuda_runtime/include" -Icommon -Ialloc -Ikernels -Ikernels/cuda -Ipolicies -Iruntime "$f"; then
      echo "check-cuda-headers: $f does not compile against CUDA $2 headers" >&2
      status=1
    fi
  done
  [ $status -eq 0 ] && echo "check-cuda-headers: ${srcs[*]} compile against CUDA $2 headers"
done
exit $status
