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

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: missing packages (${missing[*]}); run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps.sh: done"
