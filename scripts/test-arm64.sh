#!/usr/bin/env bash
# ARM: cross-build ballast for aarch64 and run the test suite under qemu-aarch64.
#   scripts/test-arm64.sh [ctest args...]
# Installs the cross toolchain and the arm64 libraries (scripts/install-arm64-deps.sh), configures
# build-arm64/ with cmake/aarch64-linux-gnu.cmake (no benchmarks, no oneDNN: see that script), builds,
# and runs ctest: every test on an emulated CPU with SVE2, SVE and NEON at 512-bit vectors, then the
# kernel tests again at 128, 256 and 2048 bits (label `sve`). PyTorch parity stays x86-only.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
esac
scripts/install-arm64-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DBALLAST_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-arm64 -j"$jobs"
qemu-aarch64 -cpu max build-arm64/tools/ballast --version
# SessionConcurrencyTest (many std::threads on one session) takes 14 min under qemu here; the
# threading logic is target-independent and runs on x86 and under ThreadSanitizer (ci-extra.sh).
ctest --test-dir build-arm64 --output-on-failure -j"$jobs" -E 'SessionConcurrencyTest' "$@"
