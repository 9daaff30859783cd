#!/usr/bin/env bash
# Build for a GPU here, run on a GPU machine that has the driver and the CUDA toolkit's libraries but
# not spill's build dependencies (hwloc, libnuma, PCRE2, libmicrohttpd, libcurl dev packages, pkg-config).
#
#   scripts/gpu-pack.sh pack [ARCH]   here: build $SPILL_BUILD (default build-gpu) for CUDA architecture
#                                     ARCH (default 90: H100/H200/GH200) and write .gpu-pack/spill-gpu.tar.xz:
#                                     the programs and tests (no objects), the shared libraries they need
#                                     beyond glibc and CUDA's own, and who built it where
#   scripts/gpu-pack.sh run [ARGS]    there, in the same checkout: unpack, point the loader at the
#                                     libraries (cuBLAS from the machine's toolkit), make the build's
#                                     absolute paths valid, then scripts/gpu-check.sh ARGS on the prebuilt tree
#
# The pack is about 10 MB; both machines must be x86-64 (or both aarch64) with a glibc at least as new
# here as there. CTest's files name absolute paths, so `run` links the checkout to the path it was built
# at when that path is free on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${SPILL_BUILD:-build-gpu}
pack_dir=.gpu-pack
pack=$pack_dir/spill-gpu.tar.xz

case "${1:-}" in
pack)
    arch=${2:-90}
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON -DSPILL_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
    cmake --build "$build" -j "$(nproc)" >/dev/null
    mkdir -p "$pack_dir"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/lib"
    # every shared library the programs load, less glibc's, the compiler's and CUDA's (the GPU machine
    # has its own, matching its driver)
    find "$build" -type f \( -perm -u+x -o -name '*.so' \) -not -path '*/CMakeFiles/*' -print0 |
        xargs -0 ldd 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
        grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*|libgcc_s|libstdc\+\+|libcuda|libcublas[A-Za-z]*|libcudart|libspill[-_A-Za-z]*)\.so' |
        while read -r l; do cp -L "$l" "$stage/lib/"; done
    {
        echo "built by scripts/gpu-pack.sh on $(uname -m) $(hostname), $(date -u '+%Y-%m-%d %H:%M') UTC"
        echo "commit $(git rev-parse --short HEAD)$(git diff --quiet && echo '' || echo ' (with local changes)')"
        echo "$(nvcc --version | grep -o 'release [0-9.]*' | head -1), CUDA architecture $arch, $(${CC:-cc} --version | head -1)"
        echo "root $root"
    } >"$build/PREBUILT"
    tar -C "$root" -cf "$stage/build.tar" --exclude='*.o' --exclude='*.a' --exclude='CMakeFiles' "$build"
    tar -C "$stage" -cJf "$pack" build.tar lib
    echo "gpu-pack: wrote $pack ($(du -h "$pack" | cut -f1)): $(ls "$stage/lib" | wc -l) libraries; $(cat "$build/PREBUILT" | head -2 | tr '\n' ' ')"
    ;;
run)
    shift
    [ -f "$pack" ] || { echo "gpu-pack: no $pack (scripts/gpu-pack.sh pack, then carry $pack_dir)" >&2; exit 2; }
    tmp=$(mktemp -d)
    tar -C "$tmp" -xJf "$pack"
    tar -C "$root" -xf "$tmp/build.tar"
    mkdir -p "$root/$pack_dir/lib"
    cp "$tmp"/lib/* "$root/$pack_dir/lib/" 2>/dev/null || true
    rm -rf "$tmp"
    built_at=$(sed -n 's/^root //p' "$build/PREBUILT")
    if [ -n "$built_at" ] && [ "$built_at" != "$root" ]; then
        if [ ! -e "$built_at" ]; then
            mkdir -p "$(dirname "$built_at")" && ln -s "$root" "$built_at"
        else
            echo "gpu-pack: $built_at exists here and is not this checkout; ctest's absolute paths may miss" >&2
        fi
    fi
    # cuBLAS (and the runtime) from the machine: its toolkit or the pip wheels PyTorch brings
    cudalib=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
        /usr/local/cuda/targets/sbsa-linux/lib; do
        [ -e "$d/libcublas.so.13" ] || [ -e "$d/libcublas.so.12" ] && cudalib="$cudalib:$d"
    done
    if [ -z "$cudalib" ]; then
        for f in $(find / -xdev \( -name 'libcublas.so.1[23]' -o -name 'libcudart.so.1[23]' \) 2>/dev/null | head -4); do
            cudalib="$cudalib:$(dirname "$f")"
        done
    fi
    export LD_LIBRARY_PATH="$root/$pack_dir/lib${cudalib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu-pack: LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >&2
    missing=$(ldd "$build/spill-generate" "$build/tests/test_cuda_ops" 2>&1 | grep 'not found' | sort -u || true)
    [ -z "$missing" ] || echo "gpu-pack: still missing: $missing" >&2
    SPILL_GPU_PREBUILT=1 SPILL_BUILD="$build" exec scripts/gpu-check.sh "$@"
    ;;
*)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
