#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz/, clang, ASan + UBSan) and run them.
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      (default: all, 60 seconds each)
# Each target starts from its seed corpus (tests/fuzz/corpus/<target>) and the regression inputs
# (tests/fuzz/regress/<target>); what it learns goes to ${SPILL_FUZZ_BUILD:-build-fuzz}/corpus/<target>,
# crashes to .../crashes/<target>/. Prints one line per target with executions, coverage and features,
# and exits non-zero when any target crashed. SPILL_FUZZ_JOBS=N runs N targets at once (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
secs="${2:-60}"
build="${SPILL_FUZZ_BUILD:-build-fuzz}"
jobs="${SPILL_FUZZ_JOBS:-1}"
all=(json gguf model safetensors hf_config tokenizer_json chat profile options args cli server)
if [ "$which" = all ]; then targets=("${all[@]}"); else targets=("$which"); fi
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "fuzz: no target '$t' (targets: ${all[*]})" >&2; exit 2; }
done
command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang libclang-rt-dev)" >&2; exit 2; }
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPILL_FUZZ=ON -DBUILD_TESTING=OFF -DSPILL_CUDA=OFF >&2
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" >&2

run_one() {
  local t="$1" work="$build/corpus/$1" crashes="$build/crashes/$1" log="$build/logs/$1.log"
  mkdir -p "$work" "$crashes" "$(dirname "$log")"
  local dirs=("$work" "tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regress/$t" ] && dirs+=("tests/fuzz/regress/$t")
  # -rss_limit_mb: the model and tokenizer targets map and build whole vocabularies
  local rc=0
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=20 \
    -artifact_prefix="$crashes/" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  local execs cov ft seed
  # (a crash while the corpus loads leaves no cov/ft lines: nothing found is not an error here)
  seed=$(grep -o 'INFO: Seed: [0-9]*' "$log" | grep -o '[0-9]*$' | head -1 || true)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  printf 'fuzz: %-15s %10s executions  cov %6s  ft %6s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "$([ $rc = 0 ] && echo ok || echo "CRASH (rc $rc$([ $rc = 70 ] && echo ': a timeout'), -seed=${seed:-?}): see $log and $crashes/")"
  if [ $rc != 0 ]; then
    # what a CI log needs to reproduce it: the report and the input (base64, when small)
    { echo "fuzz: $t: the end of $log:"; { grep -v '^#\|^INFO\|^"' "$log" || true; } | tail -n 40
      local a
      a=$(ls -t "$crashes"/ 2>/dev/null | head -1 || true)
      if [ -n "$a" ] && [ "$(stat -c %s "$crashes/$a")" -le 16384 ]; then
        echo "fuzz: $t: the input, $crashes/$a (base64; base64 -d > f and run build-fuzz/tests/fuzz/fuzz_$t f):"
        base64 -w 100 "$crashes/$a"
      fi; } >&2
  fi
  return $rc
}

fail=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" & pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit $fail
