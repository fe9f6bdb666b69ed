#!/usr/bin/env bash
# Quick start 1: install dependencies, build, run the headline demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/tools/ballast demo "$@"
