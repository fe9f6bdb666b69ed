# Sourced by the install scripts: ensure_packages TOOL PACKAGE... installs the Debian packages that are
# missing (apt-get update first, only then), says nothing when all are present, and fails with the list
# when it is not root. TOOL names the calling script in its messages.
ensure_packages() {
  local tool=$1 p arch
  shift
  local missing=()
  local native
  native=$(dpkg --print-architecture)
  for p in "$@"; do
    # A name without ":arch" means the native (or an arch-independent) package: with arm64 added,
    # "libhwy-dev" alone also lists libhwy-dev:arm64, which must not count.
    case "$p" in
      *:*) arch=${p#*:} ;;
      *) arch="$native|all" ;;
    esac
    dpkg-query -W -f='${db:Status-Status} ${Architecture}\n' "$p" 2>/dev/null |
      grep -Eqx "installed ($arch)" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "$tool: missing packages (${missing[*]}); run as root or install them with apt-get" >&2
    return 1
  fi
  echo "$tool: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || return 1
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || return 1
  echo "$tool: done"
}
