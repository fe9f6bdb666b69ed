#!/usr/bin/env bash
# CI checks beyond the test suite (run after scripts/test.sh has built build/):
#  1. install ballast into a prefix, build examples/service against the installed CMake package, run it;
#  2. the multi-threaded InferenceSession test under ThreadSanitizer. Its sessions use one OpenMP thread
#     per call (the concurrency comes from std::threads), so libgomp's own synchronization, which TSan
#     cannot see, never runs; oneDNN (uninstrumented JIT code) is left out of this build.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== install + example service"
cmake --install build --prefix "$work/prefix" >/dev/null
cmake -S examples/service -B "$work/service" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/service" -j"$jobs" >/dev/null
"$work/service/mlp_service" 4 2000

echo "== ThreadSanitizer: SessionConcurrencyTest"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBALLAST_WITH_ONEDNN=OFF \
  -DBALLAST_BUILD_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS="-fsanitize=thread" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j"$jobs" --target session_test >/dev/null
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ./build-tsan/tests/session_test --gtest_filter='SessionConcurrencyTest.*'
echo "ci-extra: all passed"
