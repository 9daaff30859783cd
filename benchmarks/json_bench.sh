#!/usr/bin/env bash
# The whole JSON comparison of docs/json.md: makes the two tokenizer.json files (not committed: the
# generator gives the same bytes every time), then runs json_bench speed, hostile and diff.
#   benchmarks/json_bench.sh [BUILD_DIR] [EXTRA_TOKENIZER_JSON...]
# json_bench is built when pkg-config finds jansson and libcjson (apt-get install libjansson-dev libcjson-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
bench="$build/json_bench"
[ -x "$bench" ] || { echo "json_bench: $bench not built (needs libjansson-dev and libcjson-dev)" >&2; exit 1; }
dir=${SPILL_JSON_BENCH_DIR:-${TMPDIR:-/tmp}/spill-json-bench}
mkdir -p "$dir"
[ -s "$dir/tok-strings.json" ] || python3 benchmarks/gen_big_tokenizer_json.py "$dir/tok-strings.json"
[ -s "$dir/tok-pairs.json" ] || python3 benchmarks/gen_big_tokenizer_json.py "$dir/tok-pairs.json" --merges-format pairs
echo "## speed"
"$bench" speed --reps "${REPS:-9}" "$dir/tok-strings.json" "$dir/tok-pairs.json" "$@"
echo; echo "## hostile"
"$bench" hostile
echo; echo "## diff"
"$bench" diff --n "${N:-100000}"
