#!/usr/bin/env bash
# Installs what spill needs to build and test on Debian/Ubuntu, only what is missing.
set -euo pipefail
need=()
# libpcre2-dev: the tokenizer's regular expressions (runtime/text/regex.c). The aarch64 build's own
# packages (the cross compiler, qemu, the :arm64 dev packages) are installed by scripts/aarch64.sh.
# libmicrohttpd-dev: spill-server's HTTP (server/http.c); libcurl: spill-bench serve's clients; curl: the
# server's tests as a client.
# liburing-dev: the disk tier's reads (runtime/disk.c; without it they are synchronous preads).
# clang, libclang-rt-dev: libFuzzer and the sanitizer runtimes for scripts/fuzz.sh and scripts/tsan.sh
# (the ordinary build and tests need neither).
for p in cmake pkg-config gcc make libhwloc-dev libnuma-dev libcmocka-dev libpcre2-dev liburing-dev libmicrohttpd-dev libcurl4-openssl-dev curl python3 python3-pip clang libclang-rt-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 && need=("${need[@]/python3-pip}")
if [ "${#need[@]}" -gt 0 ] && [ -n "$(echo "${need[@]}" | tr -d ' ')" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-deps: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${need[@]} >&2
fi
# the test fixture writer (tests/gen_stories_variants.py) uses numpy and gguf from PyPI; without
# them that one test skips and says why
if ! python3 -c "import numpy, gguf" >/dev/null 2>&1; then
  echo "install-deps: pip install numpy gguf (for the model-variant fixtures)" >&2
  python3 -m pip install -q numpy gguf >&2 2>/dev/null || python3 -m pip install -q --break-system-packages numpy gguf >&2 2>/dev/null ||
    echo "install-deps: could not install numpy/gguf; test_variants will skip" >&2
fi
# spill-server's test drives it with the openai client (tests/test_server.py); without it that test
# skips and says why
if ! python3 -c "import openai" >/dev/null 2>&1; then
  echo "install-deps: pip install openai (the client tests/test_server.py drives spill-server with)" >&2
  python3 -m pip install -q openai >&2 2>/dev/null || python3 -m pip install -q --break-system-packages openai >&2 2>/dev/null ||
    echo "install-deps: could not install openai; test_server will skip" >&2
fi
