#!/usr/bin/env bash
# README command two: install dependencies, check formatting, build (release preset) and run every
# test: unit, integration (real agent, shell workers) and real PyTorch. Extra arguments go to ctest,
# e.g. `scripts/test.sh -R AgentTest`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/check-format.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release -j "$(nproc)" "$@"
