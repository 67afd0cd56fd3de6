#!/usr/bin/env bash
# Builds everything (library, commcat, examples, tests, benchmarks) with warnings as errors, runs
# the whole test suite, then installs into a temporary prefix and checks that a separate project
# finds comm through CMake and through pkg-config. A failing test does not skip the install check;
# the exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=$PWD
build=${COMM_BUILD_DIR:-build}
jobs=${COMM_JOBS:-2}

start=$(date +%s)
last=$start
timings=()
step() { echo; echo "== $* =="; }
took() {
  local now
  now=$(date +%s)
  timings+=("$1 $((now - last))s")
  last=$now
}
report() {
  echo
  echo "timings: ${timings[*]:-none}, total $(($(date +%s) - start))s"
}
trap report EXIT

step "dependencies"
bash scripts/deps.sh
took deps

step "configure ($build)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOMM_WERROR=ON
took configure

step "build"
cmake --build "$build" -j "$jobs"
took build

step "tests"
status=0
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 300 || status=$?
took tests

step "install check"
prefix=$(mktemp -d)
check=$(mktemp -d)
trap 'rm -rf "$prefix" "$check"; report' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
# The CMake package: find_package(comm) + comm::comm.
cmake -S "$src/tests/install" -B "$check/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$check/cmake" >/dev/null
"$check/cmake/install_check"
# The pkg-config file (relocatable: it finds its prefix from its own folder).
PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name comm.pc | head -n1)")
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
g++ -std=c++20 -o "$check/install_check_pc" "$src/tests/install/main.cpp" $(pkg-config --cflags --libs comm)
"$check/install_check_pc"
echo "install check: CMake package and pkg-config both work"
took install-check

if ((status != 0)); then
  echo "test.sh: tests failed (ctest exit $status)" >&2
fi
exit "$status"
