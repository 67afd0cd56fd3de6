#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang 14 under ASan+UBSan and runs each for
# SECONDS (default 60). Fails if any target crashes, leaks, hangs or trips UBSan; the input that did
# it is copied to tests/fuzz/regressions/<target>/ so it becomes a regression test.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (SECONDS "build": only build the targets)
# Environment: COMM_FUZZ_BUILD_DIR (default build-fuzz), COMM_JOBS (default 1: build jobs, and
# targets fuzzed at a time, one core each), COMM_FUZZ_FLAGS (extra libFuzzer flags, e.g.
# "-jobs=2 -workers=2"; "-fork=1 -ignore_crashes=1" goes on after a crash for the whole time: every
# crash is still kept and still fails the run). The grown corpus stays in the build folder
# (corpus/<target>), so a later run goes on from it. See tests/fuzz/README.md for long runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=$PWD
build=${COMM_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${COMM_JOBS:-1}
seconds=${1:-60}
shift || true

all_targets=(tls_openssl_server tls_openssl_client tls_gnutls_server tls_gnutls_client
             read_line read_with_checking pem_loading address_parse commcat_args)
targets=("${all_targets[@]}")
[ $# -gt 0 ] && targets=("$@")

export CC=${CC:-clang-14} CXX=${CXX:-clang++-14}
# UBSan's "function" check is left out: clang 14 cannot assemble it around coroutines ("Cannot
# represent a difference across sections"), and C++ code calls no function through a cast pointer.
# CI's sanitizer build (.ci/run) is this configuration with the tests added, so that the fuzz
# targets link against the library it has built already.
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCOMM_BUILD_FUZZ=ON -DCOMM_BUILD_BENCH=OFF -DCOMM_BUILD_EXAMPLES=OFF \
  -DCMAKE_CXX_FLAGS="$san" >/dev/null
ninja -C "$build" -j "$jobs" fuzz_tls_seeds $(printf 'fuzz_%s ' "${targets[@]}")
[ "$seconds" = build ] && exit 0

# Seeds that hold keys or fresh certificates are generated, never kept in the repository.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/tests/fuzz/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$build/tests/fuzz/fuzz_tls_seeds" "$build/seeds"

# One target: its status line goes to $build/fuzz-$t.status ("ok" or "FAILED" first).
run_target() {
  local t=$1 work="$build/corpus/$1" artifacts="$build/artifacts/$1" log="$build/fuzz-$1.log"
  local dirs d start status asan execs cov took n a
  mkdir -p "$work" "$artifacts"
  dirs=("$work")
  for d in "$src/tests/fuzz/corpus/$t" "$build/seeds/$t" "$src/tests/fuzz/regressions/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  echo "== fuzz $t for ${seconds}s (corpus: ${dirs[*]}) =="
  rm -f "$artifacts"/*
  start=$(date +%s)
  # PEM loading runs through GnuTLS without frame pointers: unwind slowly so lsan.supp can match.
  asan=$ASAN_OPTIONS
  [ "$t" = pem_loading ] && asan="$asan:fast_unwind_on_malloc=0"
  # shellcheck disable=SC2086
  if ASAN_OPTIONS=$asan "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -max_len=8192 \
       -print_final_stats=1 -artifact_prefix="$artifacts/" ${COMM_FUZZ_FLAGS:-} "${dirs[@]}" >"$log" 2>&1 &&
     [ -z "$(ls -A "$artifacts")" ]; then
    status=ok
  else
    status=FAILED
    # Keep the three smallest inputs (fork mode can write one per crash, mostly the same bug).
    mkdir -p "$src/tests/fuzz/regressions/$t"
    n=$(ls -A "$artifacts" | wc -l)
    for a in $(ls -S -r "$artifacts"/* 2>/dev/null | head -n 3); do
      cp "$a" "$src/tests/fuzz/regressions/$t/" && echo "kept $(basename "$a") as a regression input ($n found)"
    done
    tail -n 60 "$log"
  fi
  took=$(( $(date +%s) - start ))
  # Executions: the final stats, or (fork mode) the last progress line "#N: ...".
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' ||
          grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo "?")
  printf '%s %-22s %-7s %5ss %10s execs  cov %s\n' "$status" "$t" "$status" "$took" "$execs" "$cov" >"$build/fuzz-$t.status"
}

# COMM_JOBS targets at a time, each fuzzer on one core.
running=0
for t in "${targets[@]}"; do
  rm -f "$build/fuzz-$t.status"
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait

failed=()
summary=()
for t in "${targets[@]}"; do
  line=$(cat "$build/fuzz-$t.status" 2>/dev/null || echo "FAILED $t (no status: the runner itself failed)")
  [ "${line%% *}" = ok ] || failed+=("$t")
  summary+=("${line#* }")
done

echo
echo "== fuzz summary =="
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]} (inputs kept under tests/fuzz/regressions/; logs in $build/fuzz-*.log)"
  exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${seconds}s each without a finding"
