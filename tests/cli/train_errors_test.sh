#!/usr/bin/env bash
# `ballast train` on bad input and bad paths: each case fails with exit code 1 (not a crash) and a
# message naming the problem, before any training where it can be known in advance, and a failed run
# loses nothing already saved.
#   train_errors_test.sh BALLAST WORK_DIR
source "$(dirname "$0")/lib.sh" "$@"
awk 'BEGIN { for (r = 0; r < 60; r++) printf "%.4f,%.4f,%.4f,%.4f,%d\n",
  sin(r), cos(r * 0.7), sin(r * 1.3) * 2, cos(r * 2.1), r % 3 }' > ok.csv
common=(--data ok.csv --label-column -1 --arch 4-8-3 --batch 16)
b train "${common[@]}" --epochs 1 --checkpoint-dir sgd > /dev/null || exit 1

expect_error "another optimizer on resume" "was trained with --optimizer sgd, not adam" \
  train "${common[@]}" --epochs 2 --resume sgd/epoch-1.blst --optimizer adam
expect_error "another --arch on resume" "holds a 4-8-3 network but --arch is 4-16-3" \
  train --data ok.csv --label-column -1 --arch 4-16-3 --batch 16 --epochs 2 --resume sgd/epoch-1.blst
# A checkpoint fixes the network and the run's --batch and --seed: other values are refused.
expect_error "another --lr on resume" "was trained with --lr 0.05, not 0.1 \\(pass the same value" \
  train --resume sgd/epoch-1.blst --lr 0.1
expect_error "another --schedule on resume" "was trained with --schedule constant, not cosine" \
  train --resume sgd/epoch-1.blst --schedule cosine
expect_error "another --label-smoothing on resume" "was trained with --label-smoothing 0, not 0.2" \
  train --resume sgd/epoch-1.blst --label-smoothing 0.2
b train "${common[@]}" --epochs 2 --schedule cosine --checkpoint-dir cos > /dev/null || exit 1
expect_error "cosine's epochs on resume" "was trained with --epochs 2, not 3 \\(the cosine schedule anneals over the run's epochs\\)" \
  train --resume cos/epoch-1.blst --epochs 3
expect_error "--no-fuse on resume" "was trained without --no-fuse \\(leave it out" \
  train --resume sgd/epoch-1.blst --no-fuse
# Other rows under another path (the same features, other labels): refused by their digest.
awk -F, -v OFS=, '{ $NF = ($NF + 1) % 3; print }' ok.csv > relabelled.csv
expect_error "other data on resume" "is not the data of the run .* continues: its rows .* have the XXH3 digest [0-9a-f]{16}, the run's had [0-9a-f]{16}" \
  train --resume sgd/epoch-1.blst --data relabelled.csv
# Data that moved: the recorded path is named; the same rows elsewhere continue the run.
mkdir -p moving && cp ok.csv moving/rows.csv
b train --data moving/rows.csv "${common[@]:2}" --epochs 2 --checkpoint-dir moving_ck > /dev/null ||
  exit 1
mv moving/rows.csv moved.csv
expect_error "moved data on resume" "the data --resume 'moving_ck/epoch-1.blst' records \\(give --data if it moved\\): --data '.*moving/rows.csv' does not exist" \
  train --resume moving_ck/epoch-1.blst
b train --resume moving_ck/epoch-1.blst --data moved.csv > /dev/null ||
  fail "the same rows under another path were refused"
# --step-size 0 (the default) is the step size the checkpoint resolved.
b train "${common[@]}" --epochs 3 --schedule step --checkpoint-dir step > /dev/null || exit 1
b train --resume step/epoch-1.blst --schedule step --step-size 0 > /dev/null ||
  fail "--step-size 0 on resume was refused"
expect_error "another --step-size on resume" "was trained with --step-size 1, not 2" \
  train --resume step/epoch-1.blst --step-size 2
expect_error "another --dropout on resume" "was trained with --dropout 0.5, not 0.3" \
  train "${common[@]}" --epochs 2 --resume sgd/epoch-1.blst --dropout 0.3
expect_error "--no-bn on resume" "holds a network with BatchNorm: drop --no-bn" \
  train "${common[@]}" --epochs 2 --resume sgd/epoch-1.blst --no-bn
expect_error "--init on resume" "--init has no effect with --resume" \
  train "${common[@]}" --epochs 2 --resume sgd/epoch-1.blst --init kaiming
expect_error "another --seed on resume" "was trained with --seed 0, not 9" \
  train "${common[@]}" --epochs 2 --resume sgd/epoch-1.blst --seed 9
expect_error "another --batch on resume" "was trained with --batch 16, not 32" \
  train --data ok.csv --label-column -1 --arch 4-8-3 --batch 32 --epochs 2 --resume sgd/epoch-1.blst
# Widths and schedule flags out of range.
for arch in 4-8-3- -4-8-3 4--3; do
  expect_error "--arch $arch" "--arch '$arch': a width is missing" \
    train --data ok.csv --label-column -1 --arch="$arch" --batch 16 --epochs 1
done
expect_error "--clip-grad-norm -1" "--clip-grad-norm -1 must be a finite number >= 0" \
  train "${common[@]}" --epochs 1 --clip-grad-norm -1
expect_error "--momentum -1" "--momentum -1 must be a finite number >= 0" \
  train "${common[@]}" --epochs 1 --momentum -1
expect_error "--label-smoothing 2" "--label-smoothing 2 must be in \[0, 1\]" \
  train "${common[@]}" --epochs 1 --label-smoothing 2
expect_error "--warmup -2" "--warmup -2 must be a whole number >= 0" train "${common[@]}" --epochs 1 --warmup -2
expect_error "--step-size -1" "--step-size -1 must be a whole number >= 0" \
  train "${common[@]}" --epochs 1 --schedule step --step-size -1
expect_error "--step-size with cosine" "--step-size is for --schedule step, not cosine" \
  train "${common[@]}" --epochs 1 --schedule cosine --step-size 2
expect_error "--gamma -0.5" "--gamma -0.5 must be a finite number >= 0" \
  train "${common[@]}" --epochs 1 --schedule step --gamma -0.5
touch a_file
expect_error "--checkpoint-dir under a file" "checkpoint-dir 'a_file/sub' cannot be created" \
  train "${common[@]}" --epochs 1 --checkpoint-dir a_file/sub
sed '12s/^[^,]*/nan/' ok.csv > nan.csv
expect_error "a NaN cell" "'nan.csv' line 12, column 1: 'nan' is not a finite number" \
  train --data nan.csv --label-column -1 --arch 4-8-3 --batch 16 --epochs 1
sed '1s/^[^,]*/abc/' ok.csv > typo.csv
expect_error "a typo in the first row" "line 1, column 1: 'abc'" \
  train --data typo.csv --label-column -1 --arch 4-8-3 --batch 16 --epochs 1
head -n 30 ok.csv > small.csv
expect_error "fewer rows than a batch" "27 training rows, fewer than one batch of 128" \
  train --data small.csv --label-column -1 --arch 4-8-3 --epochs 1
expect_error "--init normal:abc" "--init 'normal:abc'" train "${common[@]}" --epochs 1 --init normal:abc
expect_error "--data that does not exist" "--data 'nowhere' does not exist" \
  train --data nowhere --arch 4-8-3 --epochs 1
# An output that cannot be written is found before training, not after it.
expect_error "--out in a missing directory" "--out 'missing/m.blst': directory 'missing' does not exist" \
  train "${common[@]}" --epochs 1 --out missing/m.blst
if grep -q "epoch 1/" out.txt; then fail "trained before finding --out unwritable"; fi
expect_error "--json in a missing directory" "--json 'missing/j.json'" \
  train "${common[@]}" --epochs 1 --json missing/j.json
# A directory whose mode bits let root write but whose file system refuses a new file.
expect_error "--out where no file can be created" "--out '/proc/m.blst': .*directory '/proc'" \
  train "${common[@]}" --epochs 1 --out /proc/m.blst
if grep -q "epoch 1/" out.txt; then fail "trained before finding --out unwritable"; fi
expect_error "--checkpoint-dir where no file can be created" "--checkpoint-dir '/proc/epoch-1.blst': .*directory '/proc'" \
  train "${common[@]}" --epochs 1 --checkpoint-dir /proc
if grep -q "epoch 1/" out.txt; then fail "trained before finding --checkpoint-dir unwritable"; fi
# A diverging run stops, says no checkpoint exists yet, and keeps the saved model and, with no
# epoch completed, the earlier log.
echo "an earlier model" > keep.blst
echo "an earlier log" > nan.log
expect_error "a NaN loss" "no checkpoint was written yet; train: the loss is (nan|inf|-inf) at step" \
  train "${common[@]}" --epochs 3 --lr 1e30 --checkpoint-dir nan_ck --out keep.blst --log nan.log
grep -q "an earlier model" keep.blst || fail "the saved model was overwritten"
grep -q "an earlier log" nan.log || fail "the earlier log was overwritten by an empty one"
# Outputs may go into the checkpoint directory, which the run creates.
b train "${common[@]}" --epochs 1 --checkpoint-dir new_ck --out new_ck/final.blst --log new_ck/log.csv \
  > /dev/null || fail "--out inside a new --checkpoint-dir was refused"
test -f new_ck/final.blst || fail "no model saved inside the checkpoint directory"
# A finite loss with weights gone to infinity is caught at the end of the epoch, before its
# checkpoint; the checkpoint resumed from stays the last good one. (Epoch 2's rate is 0.05 x 1e20;
# the resumed run goes on past the checkpoint's one epoch.)
b train "${common[@]}" --epochs 1 --checkpoint-dir inf_ck --schedule step --step-size 1 \
  --gamma 1e20 > /dev/null || exit 1
expect_error "non-finite weights" "the last good checkpoint, 'inf_ck/epoch-1.blst', is kept; .*holds a NaN or an infinity after epoch 2" \
  train --epochs 3 --checkpoint-dir inf_ck --resume inf_ck/epoch-1.blst
test -f inf_ck/epoch-2.blst && fail "a checkpoint was written from bad weights"
# Any regular file is read as CSV, whatever its extension.
cp ok.csv DATA.TXT
b train --data DATA.TXT --label-column -1 --arch 4-8-3 --batch 16 --epochs 1 > /dev/null ||
  fail "a CSV file named DATA.TXT was not read"
# A checkpoint directory holding another run's checkpoints is refused before anything is trained
# or overwritten; a resume may write its own run's later checkpoints again, not another's.
cp sgd/epoch-1.blst sgd_epoch1.copy
expect_error "a new run into a used --checkpoint-dir" "--checkpoint-dir 'sgd' already holds checkpoints of another run \\(epoch-1.blst\\).*--resume sgd/epoch-1.blst" \
  train "${common[@]}" --epochs 1 --seed 5 --checkpoint-dir sgd
cmp -s sgd/epoch-1.blst sgd_epoch1.copy || fail "a refused run overwrote sgd/epoch-1.blst"
mkdir -p other_ck && cp step/epoch-2.blst other_ck/
expect_error "a resume into another run's checkpoints" "--checkpoint-dir 'other_ck' already holds checkpoints of another run \\(epoch-2.blst\\)" \
  train --resume sgd/epoch-1.blst --epochs 2 --checkpoint-dir other_ck
# A run refused before it trains leaves no directory of its own behind.
# (--init is checked with the other flags, before the directory is made.)
expect_error "--init foo" "--init 'foo' is not one of" \
  train "${common[@]}" --epochs 1 --init foo --checkpoint-dir refused_ck
[[ -e refused_ck ]] && fail "a run with a bad --init made its --checkpoint-dir"
expect_error "missing data" "--data 'missing.csv' does not exist" \
  train --data missing.csv --epochs 1 --checkpoint-dir refused_ck/sub/../sub2
[[ -e refused_ck ]] && fail "a run without data left its --checkpoint-dir behind"
# A copy of a checkpoint continues its run in the run's directory, past the copy's epoch.
cp step/epoch-1.blst step_copy.blst
b train --resume step_copy.blst > /dev/null || fail "a copied checkpoint could not continue its run"
# A checkpoint that cannot be written stops the run naming the last good one; when every epoch
# trained, --out is saved all the same. (epoch-2.blst is a directory here: nothing can replace it.)
mkdir -p blocked_ck/epoch-2.blst
expect_error "an unwritable checkpoint" "epoch 2: the last good checkpoint, 'blocked_ck/epoch-1.blst', is kept; .*blocked_ck/epoch-2.blst" \
  train "${common[@]}" --epochs 2 --checkpoint-dir blocked_ck --out blocked.blst
grep -q "^saved blocked.blst" out.txt && test -f blocked.blst ||
  fail "the trained model was not saved after its last checkpoint failed"
# --data that is neither a file nor a directory; "fashion-mnist" is the data set even beside a
# file of that name.
expect_error "--data from a pipe" "--data '/dev/fd/[0-9]+' is neither a regular file \\(CSV\\) nor a directory" \
  train --data <(cat ok.csv) --label-column -1 --arch 4-8-3 --batch 16 --epochs 1
cp ok.csv fashion-mnist
BALLAST_FASHION_MNIST_DIR=$PWD/no_such_dir expect_error "fashion-mnist beside a file of that name" \
  "no_such_dir/train-images-idx3-ubyte\\[.gz\\]' does not exist" train --data fashion-mnist --epochs 1
# A header line is said to be skipped; a CSV sorted by label gets a warning about its test rows.
{ echo "NA,a,b,c,label"; cat ok.csv; } > header.csv
b train --data header.csv --label-column -1 --arch 4-8-3 --batch 16 --epochs 1 > /dev/null 2> err.txt ||
  fail "a CSV with a header was refused"
grep -q "'header.csv' starts with a header line, skipped: 'NA,a,b,c,label'" err.txt ||
  fail "no note of the skipped header: $(cat err.txt)"
grep -q "warning" err.txt && fail "a warning where the header and --label-column agree: $(cat err.txt)"
# A header naming another column as the labels than the one read: a warning with the flag to pass
# (none where the column read has a label's name itself).
{ echo "x0,x1,x2,x3,Label"; cat ok.csv; } > named.csv
b train --data named.csv --arch 4-8-3 --batch 16 --epochs 1 > /dev/null 2> err.txt
grep -q "warning: the header of 'named.csv' names 'Label' as the labels (--label-column 4 or -1), but --label-column 0 reads 'x0'; pass --label-column 4 if" err.txt ||
  fail "no warning of a header naming another label column: $(cat err.txt)"
{ echo "x,y,z,category,Target"; cat ok.csv; } > named.csv
b train --data named.csv --arch 4-8-3 --batch 16 --epochs 1 > /dev/null 2> err.txt
grep -q "names 'Target' as the labels (--label-column 4 or -1), but --label-column 0 reads 'x'" err.txt ||
  fail "not the surest label name of several: $(cat err.txt)"
for header in "label,a,b,y,class" "x,y,a,b,label"; do
  { echo "$header"; cat ok.csv; } > named.csv
  column=$([[ $header == label* ]] && echo 0 || echo -1)
  b train --data named.csv --label-column "$column" --arch 4-8-3 --batch 16 --epochs 1 > /dev/null 2> err.txt
  grep -q "warning: the header" err.txt &&
    fail "a warning where the column read ($column) is named as labels in '$header': $(cat err.txt)"
done
# (Classes expected under 5 times in the test rows may well be missing: no warning for them.)
for i in 1 2 3 4 5; do cat ok.csv; done > ok300.csv
b train --data ok300.csv --label-column -1 --arch 4-8-3 --batch 16 --epochs 1 > /dev/null 2> err.txt
grep -q "warning" err.txt && fail "a warning for a CSV not sorted: $(cat err.txt)"
sort -t, -k5,5n ok300.csv > sorted.csv
b train --data sorted.csv --label-column -1 --arch 4-8-3 --batch 16 --epochs 1 > /dev/null 2> err.txt
grep -q "the test rows (the last 30 of 'sorted.csv') hold no row of classes 0, 1, which" err.txt ||
  fail "no warning for a CSV sorted by label: $(cat err.txt)"
b train "${common[@]}" --epochs 1 > /dev/null 2> err.txt
grep -q "without --out or --checkpoint-dir this run saves no model" err.txt ||
  fail "a run that saves nothing does not say so"
# The plot of a resumed run starts at its first epoch, and a one-epoch plot shows its points.
b train --resume step/epoch-2.blst --plot resumed.svg > /dev/null || fail "resume with --plot failed"
grep -q 'middle">3</text>' resumed.svg && ! grep -q 'middle">1</text>' resumed.svg ||
  fail "the resumed run's plot does not start at epoch 3"
[[ $(grep -c '<circle' resumed.svg) -eq 2 ]] || fail "the one-epoch plot's points have no markers"
finish "train error cases"
