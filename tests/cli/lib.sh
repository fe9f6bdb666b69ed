# Shared by the CLI error tests, sourced with the test's arguments BALLAST WORK_DIR: makes WORK_DIR
# afresh and works in it. BALLAST_EMULATOR, when set, is a command that runs BALLAST (qemu-aarch64 for
# a cross build).
set -uo pipefail
ballast=$1
work=$2
read -ra emulator <<< "${BALLAST_EMULATOR:-}"
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
failures=0
# b ARGS...: runs ballast.
b() { "${emulator[@]}" "$ballast" "$@"; }
# fail MESSAGE: counts a failed case.
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
# expect_error NAME PATTERN ARGS...: `ballast ARGS` exits with 1 (not a crash, not a usage error)
# and its stderr matches PATTERN; its stdout is left in out.txt.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  b "$@" > out.txt 2> err.txt
  local rc=$?
  if [[ $rc -ne 1 ]] || ! grep -qE -- "$pattern" err.txt; then
    fail "$name: exit code $rc, stderr:"
    cat err.txt
  fi
}
# finish NAME: the exit status of the test.
finish() {
  if [[ $failures -ne 0 ]]; then echo "$failures case(s) failed"; exit 1; fi
  echo "$1: all passed"
}
