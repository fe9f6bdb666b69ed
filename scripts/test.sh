#!/usr/bin/env bash
# Quick start 2: install dependencies, build, run the whole test suite with ctest.
# Tests labelled `parity` compare against PyTorch (python3-torch); without it they are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j"$jobs" "$@"
