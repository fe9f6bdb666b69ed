#!/usr/bin/env bash
# Installs what cross-building ballast for aarch64 and running its tests under emulation needs (Debian 12):
# the cross compiler, qemu-user, and the arm64 (":arm64") -dev packages of every library ballast links.
# Adds the arm64 architecture to dpkg first. Idempotent: says nothing when all is present.
# Not libdnnl-dev:arm64: Debian 12 cannot install it beside libdnnl-dev (both own a different
# /usr/include/oneapi/dnnl/dnnl_config.h), so the aarch64 build runs without the oneDNN backend.
#   scripts/install-arm64-deps.sh
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
  "") ;;
  *) echo "install-arm64-deps.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

packages=(
  g++ cmake make pkg-config g++-aarch64-linux-gnu qemu-user
  libhwy-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64 libbenchmark-dev:arm64
  libcli11-dev nlohmann-json3-dev libfmt-dev:arm64 libxxhash-dev:arm64 zlib1g-dev:arm64
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-arm64-deps.sh: missing packages (${missing[*]}); run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-arm64-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-arm64-deps.sh: done"
