#!/usr/bin/env bash
# CI checks beyond the test suite (run after scripts/test.sh has built build/):
#  1. install ballast into a prefix, build examples/service against the installed CMake package, run it;
#  2. the multi-threaded InferenceSession test under ThreadSanitizer;
#  3. the libFuzzer target of the .blst reader for 60 s under ASan and UBSan (seeds: tests/fuzz/corpus).
# The TSan run's sessions use one OpenMP thread per call (the concurrency comes from std::threads), so
# libgomp's own synchronization, which TSan cannot see, never runs; oneDNN (uninstrumented JIT code) is
# left out of the TSan and fuzz builds. The TSan build compiles the Highway kernels for AVX2 and the
# baseline only (HWY_DISABLED_TARGETS: AVX3_DL, AVX3, SSE4 and SSSE3 are bits 7, 8, 11 and 12 in
# Highway 1.0.3): it checks the session's shared state under std::threads, which no target changes.
# Instrumenting every x86 target took 4 of this step's 4.5 minutes (now 2 of 2.5); the baseline
# alone builds in 1.5 but runs the test 7x as long (scalar code under TSan).
# The fuzz target runs the reference backend only, so its build compiles the Highway kernels (ops/)
# for the baseline target alone (HWY_COMPILE_ONLY_STATIC) and without instrumentation
# (BALLAST_BUILD_FUZZERS): under ASan + UBSan, clang spent over 4 minutes on the GEMM source, for
# code the fuzzer never reaches.
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
  -DBALLAST_BUILD_BENCHMARKS=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread -DHWY_DISABLED_TARGETS=$(((1 << 7) | (1 << 8) | (1 << 11) | (1 << 12)))" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j"$jobs" --target session_test >/dev/null
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ./build-tsan/tests/session_test --gtest_filter='SessionConcurrencyTest.*'
echo "== libFuzzer: the .blst reader, 60 s under ASan + UBSan"
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DBALLAST_WITH_ONEDNN=OFF -DBALLAST_BUILD_TESTS=OFF -DBALLAST_BUILD_BENCHMARKS=OFF \
  -DBALLAST_BUILD_FUZZERS=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined -DHWY_COMPILE_ONLY_STATIC" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-fuzz -j"$jobs" --target format_fuzz >/dev/null
mkdir -p "$work/corpus"
cp tests/fuzz/corpus/*.blst "$work/corpus/"
./build-fuzz/tests/fuzz/format_fuzz -max_total_time=60 -rss_limit_mb=2048 \
  -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 "$work/corpus" 2>&1 | tail -n 12

echo "ci-extra: all passed"
