#!/usr/bin/env bash
# Builds everything (library, commcat, examples, tests, benchmarks) with warnings as errors, runs
# the whole test suite, then installs into a temporary prefix and checks that a separate project
# finds comm through CMake and through pkg-config.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=$PWD
build=${COMM_BUILD_DIR:-build}
jobs=${COMM_JOBS:-2}

now() { date +%s; }
step() { echo; echo "== $* =="; }
t0=$(now)

step "dependencies"
bash scripts/deps.sh

step "configure ($build)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOMM_WERROR=ON
t1=$(now)

step "build"
cmake --build "$build" -j "$jobs"
t2=$(now)

step "tests"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 300
t3=$(now)

step "install check"
prefix=$(mktemp -d)
check=$(mktemp -d)
trap 'rm -rf "$prefix" "$check"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
# The CMake package: find_package(comm) + comm::comm.
cmake -S "$src/tests/install" -B "$check/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$check/cmake" >/dev/null
"$check/cmake/install_check"
# The pkg-config file (static library: its private requirements are linked too). The file names
# the configured prefix, so point it at the temporary one.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pc=(pkg-config --define-variable=prefix="$prefix")
# shellcheck disable=SC2046
g++ -o "$check/install_check_pc" "$src/tests/install/main.cpp" \
  $("${pc[@]}" --cflags comm) $("${pc[@]}" --static --libs comm)
"$check/install_check_pc"
echo "install check: CMake package and pkg-config both work"
t4=$(now)

echo
echo "timings: configure $((t1 - t0))s, build $((t2 - t1))s, tests $((t3 - t2))s, install check $((t4 - t3))s, total $((t4 - t0))s"
