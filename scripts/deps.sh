#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing comm needs, only those missing.
# Runs as root on a fresh machine; does nothing (and needs no network) when all are present.
#   scripts/deps.sh          what the build, the tests and the benchmarks need
#   scripts/deps.sh fuzz     also clang 14 and its runtime (libFuzzer) for scripts/fuzz.sh
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libssl-dev openssl libgnutls28-dev gnutls-bin
  libgtest-dev libgmock-dev libbenchmark-dev libasio-dev
  python3 socat
)
for extra in "$@"; do
  case "$extra" in
    fuzz) packages+=(clang-14 libclang-rt-14-dev) ;;
    *) echo "deps: unknown group '$extra' (known: fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg -s "$p" >/dev/null 2>&1; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update
"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
