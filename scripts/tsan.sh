#!/usr/bin/env bash
# ThreadSanitizer build (build-tsan) running the threaded tests: start_up_server, several
# wait-state collections, apply_in_wait_state_collection_process from other threads, TLS contexts
# shared across threads, the hostile-load soak, a plain socket_stream read on one thread while
# another writes it, a TLS one refusing a second thread, and the socket-fault suite (loops on
# their own threads under injected short reads and writes, EAGAIN, EINTR and cuts). Any data race
# or lock-order report fails the run.
#   scripts/tsan.sh [CTEST_REGEX]
# Environment: COMM_TSAN_BUILD_DIR (default build-tsan), COMM_JOBS (default 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${COMM_TSAN_BUILD_DIR:-build-tsan}
jobs=${COMM_JOBS:-1}
# The threaded tests, by suite: servers, loops, posting from other threads, shared contexts, soak,
# full-duplex plain streams, the TLS server and the refused second thread of TlsStream, and every
# suite of test_fault.
faults='^(SocketFaults|AsyncPlainCut|StreamPlainCut)\.|^[A-Za-z]+/(AsyncTls(CloseNotify|Coalescing|Cut|Faults|FaultsSeeds|HalfClose)|StreamTls(Cut|Faults|FaultsSeeds)|AsyncPlainFaults|StreamPlainFaults)\.'
filter=${1:-'^(Server|WaitStateCollection|Threads|Soak)\.|^[A-Za-z]+/(Threads|Soak|TlsStream\.(TlsServer|SecondThread))|^SocketStream\.RoundTripOneMiB$|'"$faults"}

# Flags through the script, no CMake option: the whole tree (library and tests) is instrumented.
tsan="-fsanitize=thread -fno-omit-frame-pointer"
# -O1 with line tables (file:line in reports), as TSan's documentation advises.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DCOMM_BUILD_BENCH=OFF \
  -DCOMM_BUILD_EXAMPLES=OFF -DCOMM_BUILD_TOOLS=OFF \
  -DCMAKE_CXX_FLAGS="$tsan" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
# The default filter has no test of test_tls (its threaded cases run in test_reliability's Threads);
# a filter of one's own may name any, so then every binary is built.
targets=(test_stream test_async test_reliability test_fault)
(($# == 0)) || targets+=(test_tls)
ninja -C "$build" -j "$jobs" "${targets[@]}"

# halt_on_error: the first report fails the test that caused it; second_deadlock_stack for lock order.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:history_size=4}
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 600 -R "$filter"
