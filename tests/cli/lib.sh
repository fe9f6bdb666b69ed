# Shared by the CLI error tests: sourced after `ballast`, `emulator` and `failures` are set.
# b ARGS...: runs ballast (under BALLAST_EMULATOR when set).
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
