#!/usr/bin/env bash
# Builds commcat alone and runs `commcat demo`: a TLS server and client in one process, for every
# available implementation pair (OpenSSL, GnuTLS), on a CA and certificate made in memory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/deps.sh
build=${COMM_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "${COMM_JOBS:-2}" --target commcat
exec "$build/tools/commcat/commcat" demo
