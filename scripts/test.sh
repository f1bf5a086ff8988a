#!/usr/bin/env bash
# README command two: install dependencies, check formatting, build and run every test (unit,
# integration with the real agent and shell workers, real PyTorch) in the release build (CUDA code
# compiled and linked; its tests skip without a GPU), with the layering rules checked on its
# sources and target graph and clang-tidy over the product code, then again in the ASan+UBSan
# build (host code only). GANGWAY_TEST_SANITIZERS=0 skips the second pass. Extra arguments go
# to ctest, e.g. `scripts/test.sh -R AgentTest`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/check-format.sh

presets=(release)
[ "${GANGWAY_TEST_SANITIZERS:-1}" != 0 ] && presets+=(asan)
for preset in "${presets[@]}"; do
  echo "== ${preset}: build and test"
  cmake --preset "$preset" >/dev/null
  if [ "$preset" = release ]; then scripts/check-layering.sh "build/$preset"; fi
  cmake --build --preset "$preset"
  if [ "$preset" = release ]; then scripts/check-tidy.sh "build/$preset"; fi
  ctest --preset "$preset" -j "$(nproc)" "$@"
done
