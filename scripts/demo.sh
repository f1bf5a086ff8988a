#!/usr/bin/env bash
# README command one: install dependencies, build gangway, and train a small model with PyTorch
# DDP (gloo) in 4 workers under `gangway run --standalone`. Extra arguments go to the training
# script, e.g. `scripts/demo.sh --steps 100`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target gangway
# Debian's PyTorch lives in the system interpreter, which may not be the first python3 on PATH.
export PYTHON_EXEC=/usr/bin/python3
exec build/release/launcher/gangway run --standalone --nproc-per-node 4 \
  deploy/examples/ddp_train.py "$@"
