#!/usr/bin/env bash
# Installs what cross-building ballast for aarch64 and running its tests under emulation needs (Debian 12):
# the cross compiler, qemu-user, the arm64 (":arm64") -dev packages of every library ballast links, and
# libgomp1:arm64 (qemu loads arm64 programs against the multiarch libraries; the cross compiler's own
# libgomp in /usr/aarch64-linux-gnu is not on that path).
# Adds the arm64 architecture to dpkg first. Idempotent: says nothing when all is present.
# Not libdnnl-dev:arm64: Debian 12 cannot install it beside libdnnl-dev (both own a different
# /usr/include/oneapi/dnnl/dnnl_config.h), so the aarch64 build runs without the oneDNN backend.
#   scripts/install-arm64-deps.sh
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  "") ;;
  *) echo "install-arm64-deps.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

packages=(
  g++ cmake make pkg-config g++-aarch64-linux-gnu qemu-user
  libgomp1:arm64 libhwy-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64 libbenchmark-dev:arm64
  libcli11-dev nlohmann-json3-dev libfmt-dev:arm64 libxxhash-dev:arm64 zlib1g-dev:arm64
)

# The :arm64 packages need the architecture known to dpkg (only root can add it; without it they show
# as missing and ensure_packages says so).
if [ "$(id -u)" -eq 0 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
source "$(dirname "$0")/lib/apt.sh"
ensure_packages install-arm64-deps.sh "${packages[@]}"
