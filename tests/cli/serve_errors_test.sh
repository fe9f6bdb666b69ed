#!/usr/bin/env bash
# `ballast run`, `fold`, `diagnose` and `bench` on bad input and bad paths: exit code 1 (not a crash)
# with a message naming the problem, checked before long work; NaN input comes out NaN, as in PyTorch.
#   serve_errors_test.sh BALLAST WORK_DIR
source "$(dirname "$0")/lib.sh" "$@"
awk 'BEGIN { for (r = 0; r < 60; r++) printf "%.4f,%.4f,%.4f,%.4f,%d\n",
  sin(r), cos(r * 0.7), sin(r * 1.3) * 2, cos(r * 2.1), r % 3 }' > data.csv
b train --data data.csv --label-column -1 --arch 4-8-3 --batch 16 --epochs 1 --checkpoint-dir ck \
  --out m.blst > /dev/null || exit 1

# NaN in, NaN out (the ReLU keeps it); the other row is unaffected.
printf '0.1,0.2,0.3,0.4\n1,2,nan,4\n' > nan.csv
b run m.blst --input nan.csv > y.csv || fail "run with a NaN cell failed"
[[ "$(sed -n 2p y.csv)" == "nan,nan,nan" ]] || fail "a NaN row gave '$(sed -n 2p y.csv)'"
[[ "$(sed -n 1p y.csv)" != *nan* ]] || fail "a clean row gave NaN"
# Numbers as Python writes them: tiny values round to 0, a leading '+' is fine.
printf '1e-50,+1,2,3\n' > ok.csv
b run m.blst --input ok.csv > /dev/null || fail "1e-50 or +1 was refused"
# A header line (no number in it) is skipped, as `ballast train` skips it, and so is a byte order
# mark; a first line with a typo is still an error.
b run m.blst --input ok.csv > y_ok.csv
{ echo "a,b,c,d"; cat ok.csv; } > header.csv
b run m.blst --input header.csv > y_header.csv || fail "run refused a CSV header"
cmp -s y_ok.csv y_header.csv || fail "run with a header line gave other outputs"
{ printf '\xef\xbb\xbf'; cat ok.csv; } > bom.csv
b run m.blst --input bom.csv > y_bom.csv || fail "run refused a byte order mark"
cmp -s y_ok.csv y_bom.csv || fail "run with a byte order mark gave other outputs"
printf '1;2;3;4\n' > semicolons.csv
expect_error "a CSV of semicolons" "holds no rows \\(its one line holds no number, so it was taken for a header: '1;2;3;4'" \
  run m.blst --input semicolons.csv
# An output run cannot write is found before the model runs.
expect_error "--output of an unknown type" "--output 'y.txt': unknown output type" \
  run m.blst --input ok.csv --output y.txt
printf '1,x,2,3\n' > typo.csv
expect_error "a first line with a typo" "'typo.csv' line 1 column 2: 'x' is not a number" \
  run m.blst --input typo.csv
printf '1e39,1,2,3\n' > big.csv
expect_error "a value past float's range" "'big.csv' line 1 column 1: '1e39' is outside float's range" \
  run m.blst --input big.csv
mkdir -p dir.csv
expect_error "a directory as input" "'dir.csv' is not a regular file" run m.blst --input dir.csv
# Output that cannot be written is an error, not a silent success.
if [[ -w /dev/full ]]; then
  b run m.blst --input ok.csv > /dev/full 2> err.txt && fail "writing to /dev/full succeeded"
  grep -q "cannot write to standard output" err.txt || fail "no message for a full stdout"
fi
# A checkpoint carries the input normalization: run gives the final model's outputs.
b run ck/epoch-1.blst --input ok.csv > y_ck.csv || fail "run on a checkpoint failed"
b run m.blst --input ok.csv > y_m.csv
cmp -s y_ck.csv y_m.csv || fail "run on the checkpoint and on the model differ"
# run applies the normalization: a net trained on features near 100 (scaled to mean 0, std 1 for
# training) classifies their raw rows as well as it learned to (96% here); fed them unscaled, it
# would answer one class for all (51%).
awk 'BEGIN { for (r = 0; r < 400; r++) { a = sin(r * 1.7); c = cos(r * 0.9);
  printf "%.4f,%.4f,%d\n", 100 + 10 * a, 100 + 10 * c, (a + c > 0) } }' > offset.csv
b train --data offset.csv --label-column -1 --arch 2-8-2 --batch 20 --epochs 10 --dropout 0 \
  --out offset.blst > /dev/null || fail "training on offset.csv failed"
cut -d, -f1-2 offset.csv > offset_x.csv
b run offset.blst --input offset_x.csv > offset_y.csv || fail "run on offset_x.csv failed"
accuracy=$(paste -d, offset_y.csv offset.csv |
  awk -F, '{ n++; ok += (($2 > $1) == $5) } END { printf "%.0f", 100 * ok / n }')
[[ $accuracy -ge 90 ]] || fail "run on raw rows: ${accuracy}% right; the normalization was not applied?"
# fold turns a checkpoint into an inference model without optimizer state.
b fold ck/epoch-1.blst folded.blst > /dev/null || fail "fold of a checkpoint failed"
b info folded.blst > info.txt
grep -q "training checkpoint" info.txt && fail "the folded model is still a checkpoint"
grep -q "optimizer/" info.txt && fail "the folded model kept optimizer state"
expect_error "resume from a folded model" "inference model, not a training checkpoint" \
  train --data data.csv --label-column -1 --arch 4-8-3 --batch 16 --epochs 2 --resume folded.blst
# diagnose: numbers that are not numbers, sizes past memory.
expect_error "diagnose --init normal:abc" "--init 'normal:abc'" diagnose --init normal:abc --depth 2 --width 8
expect_error "diagnose --width 10^6" "--width 1000000" diagnose --width 1000000 --depth 1 --batch 2
expect_error "diagnose --compare --init" "--compare runs its own grid" diagnose --compare --init xavier --depth 2
# Reports whose directory is missing are found before the benchmark runs.
expect_error "bench --json in a missing directory" "--json 'missing/k.json': directory 'missing' does not exist" \
  bench mlp --quick --threads 1 --json missing/k.json
[[ -s out.txt ]] && fail "bench ran before finding --json unwritable"
expect_error "bench roof --json in a missing directory" "--json 'missing/r.json': directory 'missing' does not exist" \
  bench roof --seconds 0.01 --json missing/r.json
# The roof: the peaks and their ratio, the round trip between cores, and JSON of them.
b bench roof --seconds 0.02 --json roof.json > roof.txt || fail "bench roof failed"
grep -Eq "^FMA roof \(.*\): [0-9.]+ GFLOP/s on 1 thread, [0-9.]+ on 2 at once \([0-9.]+x\)$" roof.txt ||
  fail "bench roof printed '$(cat roof.txt)'"
grep -Eq "^a cache line from one thread's core to another's and back: ([0-9]+ ns|not measured .*)$" roof.txt ||
  fail "bench roof printed no round trip: '$(cat roof.txt)'"
# Two threads made to share one processor: the round trip gives up, it does not hang.
OMP_PLACES="{0},{0}" OMP_PROC_BIND=true b bench roof --seconds 0.01 > roof1.txt ||
  fail "bench roof on one processor failed"
grep -q "and back: not measured (two threads could not run at once)$" roof1.txt ||
  fail "bench roof on one processor printed '$(cat roof1.txt)'"
grep -q '"scaling"' roof.json && grep -q '"2"' roof.json && grep -q '"round_trip_ns"' roof.json ||
  fail "bench roof JSON lacks its fields"
expect_error "bench step on a missing data directory" "data file 'no-such-dir/train-images-idx3-ubyte" \
  bench step --chunks 1 --steps 1 --data no-such-dir
expect_error "bench step --json in a missing directory" "--json 'missing/s.json': directory 'missing' does not exist" \
  bench step --chunks 1 --steps 1 --json missing/s.json
if [[ -d /usr/share/datasets/fashion-mnist ]]; then
  b bench step --chunks 2 --steps 2 --json step.json > step.txt || fail "bench step failed"
  grep -qE "^close cores \(round trip < 250 ns\): |^distant cores: " step.txt ||
    fail "bench step printed '$(cat step.txt)'"
  grep -q '"median_us_n"' step.json && grep -q '"fma_scaling"' step.json && grep -q '"close"' step.json &&
    grep -q '"distant"' step.json && grep -q '"shared_core"' step.json ||
    fail "bench step JSON lacks its fields"
  grep -q '"gather": *false' step.json || fail "bench step JSON does not say it read rows in place"
  b bench step --chunks 1 --steps 3 --gather --json stepg.json > stepg.txt || fail "bench step --gather failed"
  grep -q "shuffled rows gathered in the step as \`ballast train\` does" stepg.txt &&
    grep -q '"gather": *true' stepg.json || fail "bench step --gather printed '$(cat stepg.txt)'"
fi
expect_error "diagnose --plot in a missing directory" "--plot 'missing/p.svg'" \
  diagnose --depth 2 --width 8 --plot missing/p.svg
finish "serve error cases"
