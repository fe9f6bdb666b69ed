#!/usr/bin/env bash
# How far `ballast train` on 2 threads is from what the machine's two cores can give: per round, a
# lone 1-thread run, two independent 1-thread runs at once (one pinned to each core, nothing shared),
# and one 2-thread run, 3 epochs each (epochs 2-3 averaged; epoch 1 warms up). The ceiling is
# 2 x lone / concurrent: the speed-up a trainer with no threading loss would get here.
#   scripts/bench-scaling.sh [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
ballast=build/tools/ballast
[ -x "$ballast" ] || { echo "bench-scaling.sh: build first (scripts/build.sh)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "bench-scaling.sh: needs taskset (util-linux)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "bench-scaling.sh: needs 2 cores, this machine has $(nproc)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Runs here save nothing on purpose: `ballast train`'s note saying so is left out of stderr.
drop_no_model_note() { grep -v 'saves no model' >&2 || true; }
epoch_s() {  # mean seconds of epochs 2 and 3 from `ballast train` output
  sed -n 's/^epoch [23]\/3.*, \([0-9.]*\) s,.*/\1/p' |
    awk '{s += $1; n++} END {if (!n) {print "bench-scaling.sh: no epoch times in the output of ballast train" > "/dev/stderr"; exit 1}
                             printf "%.3f", s / n}'
}
for r in $(seq "$rounds"); do
  lone=$(taskset -c 0 "$ballast" train --epochs 3 --threads 1 2> >(drop_no_model_note) | epoch_s)
  taskset -c 0 "$ballast" train --epochs 3 --threads 1 2> >(drop_no_model_note) > "$tmp/c0" &
  first=$!
  taskset -c 1 "$ballast" train --epochs 3 --threads 1 2> >(drop_no_model_note) > "$tmp/c1"
  wait "$first"  # its failure stops the script too
  c0=$(epoch_s < "$tmp/c0")
  c1=$(epoch_s < "$tmp/c1")
  two=$("$ballast" train --epochs 3 --threads 2 2> >(drop_no_model_note) | epoch_s)
  awk -v l="$lone" -v a="$c0" -v b="$c1" -v t="$two" -v r="$r" 'BEGIN {
    ceil = 2 * l / ((a + b) / 2);
    printf "round %d: 1 thread %.3f s | two at once %.3f %.3f s | 2 threads %.3f s | ceiling %.2fx, 2 threads %.2fx (%.0f%% of it)\n",
      r, l, a, b, t, ceil, l / t, 100 * (l / t) / ceil }'
done
