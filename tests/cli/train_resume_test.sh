#!/usr/bin/env bash
# `ballast train` end to end on a small CSV: checkpoints every epoch, and a run resumed from the epoch-1
# checkpoint ends bit-identical to the uninterrupted run (same predictions, byte for byte), and so
# does a run that reads every input value in its GEMMs (--no-skip-zeros).
#   train_resume_test.sh BALLAST WORK_DIR
# BALLAST_EMULATOR, when set, is a command that runs BALLAST (qemu-aarch64 for a cross build).
set -euo pipefail
ballast=$1
work=$2
read -ra emulator <<< "${BALLAST_EMULATOR:-}"
run_ballast() { "${emulator[@]}" "$ballast" "$@"; }
rm -rf "$work" && mkdir -p "$work"
# 600 rows, 8 features, label = which of two fixed projections is larger (deterministic, no RNG).
awk 'BEGIN {
  srand(1);
  for (r = 0; r < 600; r++) {
    s1 = 0; s2 = 0; line = "";
    for (f = 0; f < 8; f++) {
      v = sin(r * 1.7 + f * 2.3) * 2 + cos(r * 0.3 * (f + 1));
      s1 += v * ((f % 3) - 1); s2 += v * ((f % 2) - 0.5);
      line = line "," sprintf("%.6f", v);
    }
    print (s1 > s2 ? 1 : 0) line;
  }
}' > "$work/data.csv"
common=(--data "$work/data.csv" --arch 8-16-16-2 --batch 32 --epochs 3 --lr 0.05 --seed 3)
run_ballast train "${common[@]}" --checkpoint-dir "$work/ck" --out "$work/straight.blst" \
  --json "$work/straight.json" --log "$work/straight.csv" --plot "$work/straight.svg" >/dev/null
test -f "$work/ck/epoch-1.blst" && test -f "$work/ck/epoch-3.blst"
run_ballast info "$work/ck/epoch-1.blst" --verify > "$work/info.txt"
grep -q "training checkpoint" "$work/info.txt"
run_ballast train "${common[@]}" --resume "$work/ck/epoch-1.blst" --out "$work/resumed.blst" \
  --log "$work/resumed.csv" >/dev/null
# The resumed epochs' losses and test accuracies are those of the uninterrupted run (its trainer
# evaluates the rows it is given, already normalized, whatever the checkpoint's metadata holds).
cmp <(tail -n +3 "$work/straight.csv" | cut -d, -f1,3-) <(tail -n +2 "$work/resumed.csv" | cut -d, -f1,3-)
head -n 20 "$work/data.csv" | cut -d, -f2- > "$work/x.csv"
run_ballast run "$work/straight.blst" --input "$work/x.csv" > "$work/y_straight.csv"
run_ballast run "$work/resumed.blst" --input "$work/x.csv" > "$work/y_resumed.csv"
cmp "$work/y_straight.csv" "$work/y_resumed.csv"
# Resumed with no other flag, it takes the checkpoint's (--data, --arch, --batch, --seed, --epochs,
# --lr): the same bits again.
run_ballast train --resume "$work/ck/epoch-1.blst" --out "$work/resumed_bare.blst" >/dev/null
run_ballast run "$work/resumed_bare.blst" --input "$work/x.csv" > "$work/y_resumed_bare.csv"
cmp "$work/y_straight.csv" "$work/y_resumed_bare.csv"
# So with the flags the checkpoints record away from their defaults, resumed from another directory
# (the data's path is recorded absolute). Adam's --lr left out is its default, 0.001. (64 wide: at
# 16 the dense input gradient sums in the masked one's order, the same bits.)
recipe=(--data "$work/data.csv" --arch 8-64-64-2 --batch 24 --epochs 4 --seed 9 --optimizer adam
  --weight-decay 0.02 --schedule cosine --warmup 1 --clip-grad-norm 0.5 --label-smoothing 0.1
  --dropout 0.6 --dense-dx)
run_ballast train "${recipe[@]}" --checkpoint-dir "$work/ck_recipe" --out "$work/recipe.blst" >/dev/null
cp "$work/recipe.blst" "$work/recipe_straight.blst"
(cd / && run_ballast train --resume "$work/ck_recipe/epoch-2.blst" --out "$work/recipe_resumed.blst" \
  > "$work/recipe_resumed.txt")
grep -q 'adam lr 0.001 weight decay 0.02 cosine to 0 over 4 epochs with 1 epoch(s) of linear warmup' \
  "$work/recipe_resumed.txt"
run_ballast run "$work/recipe_straight.blst" --input "$work/x.csv" > "$work/y_recipe.csv"
run_ballast run "$work/recipe_resumed.blst" --input "$work/x.csv" > "$work/y_recipe_resumed.csv"
cmp "$work/y_recipe.csv" "$work/y_recipe_resumed.csv"
# And SGD with other flags: momentum, unfused kernels, the label in the
# last column, StepLR at its default step size (epochs / 3, at least 1: 1 for 2 epochs). Two epochs
# resumed with --epochs 6 end where six uninterrupted epochs with --step-size 1 do: the step size
# is recorded, not recomputed (6 / 3 = 2). Left out, --out and --checkpoint-dir are the run's.
awk -F, -v OFS=, '{ l = $1; for (i = 1; i < NF; i++) $i = $(i + 1); $NF = l; print }' \
  "$work/data.csv" > "$work/label_last.csv"
sgd=(--data "$work/label_last.csv" --label-column -1 --arch 8-16-16-2 --batch 32 --seed 4
  --momentum 0.5 --no-fuse --schedule step --gamma 0.5)
run_ballast train "${sgd[@]}" --epochs 6 --step-size 1 --out "$work/six.blst" >/dev/null
run_ballast train "${sgd[@]}" --epochs 2 --checkpoint-dir "$work/ck_sgd" --out "$work/sgd.blst" \
  >/dev/null
run_ballast train --resume "$work/ck_sgd/epoch-2.blst" --epochs 6 > "$work/sgd_resumed.txt"
grep -q -- '--epochs 6 (the checkpoint.s run had 2)' "$work/sgd_resumed.txt"
grep -q "the run's outputs: --out $work/sgd.blst, --checkpoint-dir $work/ck_sgd" \
  "$work/sgd_resumed.txt"
grep -q 'x 0.5 every 1 epoch(s), .* unfused' "$work/sgd_resumed.txt"
test -f "$work/ck_sgd/epoch-6.blst"
run_ballast run "$work/six.blst" --input "$work/x.csv" > "$work/y_six.csv"
run_ballast run "$work/sgd.blst" --input "$work/x.csv" > "$work/y_sgd.csv"
cmp "$work/y_six.csv" "$work/y_sgd.csv"
# Cut shorter than its run (4 of 6 epochs), a resume leaves the run's --out alone.
run_ballast train --resume "$work/ck_sgd/epoch-3.blst" --epochs 4 > "$work/sgd_shorter.txt"
grep -q -- "--out $work/sgd.blst is left alone: it is for the run's 6 epochs" "$work/sgd_shorter.txt"
run_ballast run "$work/sgd.blst" --input "$work/x.csv" > "$work/y_sgd_after.csv"
cmp "$work/y_six.csv" "$work/y_sgd_after.csv"
# SIGINT (Ctrl-C) stops a run after its current step: it keeps its checkpoints and the log of the
# epochs that completed, names the checkpoint to continue from, and ends by SIGINT (status 130).
# (A background job starts with SIGINT ignored, which the run respects: env gives it the default.)
env --default-signal=INT "${emulator[@]}" "$ballast" train --data "$work/data.csv" --arch 8-16-2 \
  --batch 32 --epochs 100000 --seed 3 --checkpoint-dir "$work/ck_int" --log "$work/int.csv" \
  > "$work/int.out" 2> "$work/int.err" &
pid=$!
trap 'kill -KILL "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -f "$work/ck_int/epoch-2.blst" ] && break; sleep 0.1; done
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
test "$rc" -eq 130
grep -q "interrupted by SIGINT in epoch [0-9]* after [0-9]* of 16 batches; the last good checkpoint" \
  "$work/int.err"
done_epochs=$(grep -o 'epoch-[0-9]*\.blst' "$work/int.err" | head -n 1 | tr -dc 0-9)
test "$(wc -l < "$work/int.csv")" -eq $((done_epochs + 1))
grep -q "continue with: ballast train --resume '$work/ck_int/epoch-$done_epochs.blst'" "$work/int.err"
run_ballast train --resume "$work/ck_int/epoch-$done_epochs.blst" --epochs $((done_epochs + 1)) \
  > "$work/int_resumed.txt"
grep -q "epoch $((done_epochs + 1))/$((done_epochs + 1)):" "$work/int_resumed.txt"
# The JSON report's fields, as the issue names them: one entry per epoch.
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 - "$work/straight.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert [e["epoch"] for e in j["epochs"]] == [1, 2, 3], j
for e in j["epochs"]:
    assert set(e) >= {"epoch", "seconds", "train_loss", "test_accuracy", "lr"}, e
    assert e["lr"] == 0.05, e
    assert e["seconds"] > 0 and e["train_loss"] > 0 and 0 <= e["test_accuracy"] <= 1, e
assert abs(j["total_seconds"] - sum(e["seconds"] for e in j["epochs"])) < 1e-9, j
PY
else
  grep -q '"total_seconds"' "$work/straight.json"
fi
# The schedule reaches the steps: StepLR with gamma 0 trains epoch 1 only (no BatchNorm, whose
# running statistics would move without any step), so epochs 1 and 3 end with the same weights;
# with gamma 0.5 they do not.
sched=(--data "$work/data.csv" --arch 8-16-2 --no-bn --batch 32 --epochs 3 --seed 3 --schedule step
  --step-size 1)
run_ballast train "${sched[@]}" --gamma 0 --checkpoint-dir "$work/ck_g0" --log "$work/g0.csv" >/dev/null
test "$(cut -d, -f7 "$work/g0.csv" | paste -sd' ')" = "lr 0.05 0 0"
run_ballast run "$work/ck_g0/epoch-1.blst" --input "$work/x.csv" > "$work/y_g0_1.csv"
run_ballast run "$work/ck_g0/epoch-3.blst" --input "$work/x.csv" > "$work/y_g0_3.csv"
cmp "$work/y_g0_1.csv" "$work/y_g0_3.csv"
run_ballast train "${sched[@]}" --gamma 0.5 --checkpoint-dir "$work/ck_g5" >/dev/null
run_ballast run "$work/ck_g5/epoch-3.blst" --input "$work/x.csv" > "$work/y_g5_3.csv"
if cmp -s "$work/y_g0_3.csv" "$work/y_g5_3.csv"; then
  echo "FAIL: --gamma 0.5 ended with the weights of --gamma 0" >&2
  exit 1
fi
grep -q '<svg' "$work/straight.svg"
test "$(wc -l < "$work/straight.csv")" -eq 4
# Skipping the zeros of a ReLU output in the next Linear's GEMMs gives the same bits as reading
# them all: the same predictions, byte for byte (80 outputs: on AVX2 a whole group of panels for
# the wide tile and one panel more).
wide=(--data "$work/data.csv" --arch 8-96-80-2 --batch 32 --epochs 2 --lr 0.05 --seed 3)
run_ballast train "${wide[@]}" --out "$work/skip.blst" >/dev/null
run_ballast train "${wide[@]}" --no-skip-zeros --out "$work/dense.blst" >/dev/null
run_ballast run "$work/skip.blst" --input "$work/x.csv" > "$work/y_skip.csv"
run_ballast run "$work/dense.blst" --input "$work/x.csv" > "$work/y_dense.csv"
cmp "$work/y_skip.csv" "$work/y_dense.csv"
# Two threads give the bits of one. There each step's idle moments copy the next batch, 16 rows at a
# time: a batch of 50 takes four pieces, the last of two rows.
odd=(--data "$work/data.csv" --arch 8-16-16-2 --batch 50 --epochs 2 --lr 0.05 --seed 3)
run_ballast train "${odd[@]}" --threads 1 --out "$work/t1.blst" >/dev/null
run_ballast train "${odd[@]}" --threads 2 --out "$work/t2.blst" >/dev/null
run_ballast run "$work/t1.blst" --input "$work/x.csv" > "$work/y_t1.csv"
run_ballast run "$work/t2.blst" --input "$work/x.csv" > "$work/y_t2.csv"
cmp "$work/y_t1.csv" "$work/y_t2.csv"
# --profile: one row per phase of each layer (2 blocks + the output Linear) and the loss.
run_ballast train "${common[@]}" --profile > "$work/profile.txt"
test "$(grep -cE ' (forward|backward|update) ' "$work/profile.txt")" -eq 9
grep -qE '^ +loss +loss ' "$work/profile.txt"
# --lr defaults to 0.05 with SGD and to torch.optim.Adam's 0.001 with Adam and AdamW; a given
# --lr wins. The header line names both.
quick=(--data "$work/data.csv" --arch 8-16-2 --batch 32 --epochs 1 --seed 3)
# (Into a file: grep -q in a pipe stops reading at its match, and the writer's SIGPIPE would fail
# the pipeline.)
run_ballast train "${quick[@]}" > "$work/sgd.txt"
grep -q 'sgd lr 0.05 momentum 0.9,' "$work/sgd.txt"
run_ballast train "${quick[@]}" --optimizer adam > "$work/adam.txt"
grep -q 'adam lr 0.001,' "$work/adam.txt"
run_ballast train "${quick[@]}" --optimizer adamw --lr 0.01 > "$work/adamw.txt"
grep -q 'adamw lr 0.01 weight decay 0.01,' "$work/adamw.txt"
# --weight-decay defaults to torch.optim.AdamW's 0.01 with adamw (with 0, AdamW is Adam), and to
# 0 with sgd and adam; --momentum is SGD's alone.
run_ballast train "${quick[@]}" --optimizer adamw --weight-decay 0 --out "$work/adamw0.blst" \
  > "$work/adamw0.txt"
grep -q 'adamw lr 0.001,' "$work/adamw0.txt"
run_ballast train "${quick[@]}" --optimizer adam --out "$work/adam.blst" >/dev/null
run_ballast run "$work/adamw0.blst" --input "$work/x.csv" > "$work/y_adamw0.csv"
run_ballast run "$work/adam.blst" --input "$work/x.csv" > "$work/y_adam.csv"
cmp "$work/y_adamw0.csv" "$work/y_adam.csv"
run_ballast train "${quick[@]}" --optimizer adamw --out "$work/adamw.blst" >/dev/null
run_ballast run "$work/adamw.blst" --input "$work/x.csv" > "$work/y_adamw.csv"
if cmp -s "$work/y_adamw.csv" "$work/y_adam.csv"; then
  echo "adamw's default weight decay changed nothing"; exit 1
fi
if run_ballast train "${quick[@]}" --optimizer adam --momentum 0.5 2>"$work/err.txt"; then
  echo "--momentum was accepted with adam"; exit 1
fi
grep -q -- "--momentum is for --optimizer sgd" "$work/err.txt"
# Bad input is an error naming the problem, and nothing already saved is lost.
if run_ballast train --data "$work/missing.csv" --arch 8-2 --epochs 1 2>"$work/err.txt"; then
  echo "a missing data file was accepted"; exit 1
fi
grep -q "missing.csv" "$work/err.txt"
if run_ballast train --data "$work/data.csv" --arch 9-16-2 --epochs 1 2>"$work/err.txt"; then
  echo "a wrong --arch was accepted"; exit 1
fi
grep -q "8 features" "$work/err.txt"
echo "train/resume CLI: all passed"
