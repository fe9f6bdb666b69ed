#!/usr/bin/env bash
# Installs the Debian 12 packages ballast needs to build, test and benchmark.
# Idempotent: runs apt-get only when something is missing, and says nothing when all is present.
#   scripts/install-deps.sh            build + test dependencies (compiler, CMake, libraries, PyTorch for parity)
#   scripts/install-deps.sh --no-torch skip python3-torch (parity tests are then reported as skipped)
set -euo pipefail

with_torch=1
for arg in "$@"; do
  case "$arg" in
    --no-torch) with_torch=0 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

packages=(
  g++ cmake make git pkg-config ca-certificates clang-format clang libclang-rt-14-dev libomp-dev
  libhwy-dev libdnnl-dev ocl-icd-opencl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev libxxhash-dev zlib1g-dev
  dataset-fashion-mnist
)
if [ "$with_torch" = 1 ]; then
  packages+=(python3 python3-numpy python3-torch python3-xxhash libopenblas0-openmp)
fi

source "$(dirname "$0")/lib/apt.sh"
ensure_packages install-deps.sh "${packages[@]}"
