#!/usr/bin/env bash
# Quick start 1: install dependencies, build, train the book's MLP on Fashion-MNIST, save it, serve it.
#   scripts/demo.sh [EPOCHS]     (default 3; the book's recipe is 5)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-3}
scripts/install-deps.sh
scripts/build.sh
mkdir -p out
echo "== train: 784-256-256-10 StandardBlocks, dropout 0.5, SGD lr 0.05 momentum 0.9, batch 128"
./build/tools/ballast train --data fashion-mnist --arch 784-256-256-10 --epochs "$epochs" \
  --out out/fashion-mlp.blst --plot out/fashion-mlp.svg --json out/fashion-mlp.json
echo "== the saved model"
# Its header, metadata and checksums; not the node list (awk reads it all: no SIGPIPE under pipefail).
./build/tools/ballast info out/fashion-mlp.blst --verify | awk '/^nodes:/ { skip = 1 } /^checksums:/ { skip = 0 } !skip'
echo "== serve it: latency per batch, fused (BN folded, ReLU in the GEMM) vs unfused vs oneDNN"
./build/tools/ballast bench mlp --model out/fashion-mlp.blst --threads 1 --quick
