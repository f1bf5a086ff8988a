#!/usr/bin/env bash
# Runs clang-tidy (the checks in .clang-tidy) over gangway's product code, the C++ sources of
# common/, launcher/, scheduler/, comm/, runtime/ and kernels/ (CUDA sources are nvcc's), with the
# compile commands of a configured build, and fails on any warning, listing it.
# Usage: scripts/check-tidy.sh [BUILD_DIR]   (default: build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
db="$build/compile_commands.json"
[ -f "$db" ] || { echo "check-tidy: no $db (configure the build first)" >&2; exit 2; }
mapfile -t files < <(python3 - "$db" "$PWD" <<'PY'
import json, re, sys
root = re.escape(sys.argv[2])
product = re.compile(root + r'/(common|launcher|scheduler|comm|runtime|kernels)/.*\.cc$')
print('\n'.join(sorted({e['file'] for e in json.load(open(sys.argv[1])) if product.match(e['file'])})))
PY
)
[ ${#files[@]} -gt 0 ] || { echo "check-tidy: no product sources in $db" >&2; exit 2; }
echo "check-tidy: ${#files[@]} files"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# clang 14 has no _Float16 on x86 (clang 15 has); the host reductions use it, so for the analysis
# it reads as __fp16, the same 16-bit storage type.
if ! run-clang-tidy -p "$build" -j "$(nproc)" -quiet -extra-arg=-D_Float16=__fp16 "${files[@]}" \
    >"$log" 2>&1; then
  # The diagnostics, without clang-tidy's per-file command lines and counts.
  grep -E -A3 '(warning|error):' "$log" | grep -v '^--$' >&2 || cat "$log" >&2
  echo "check-tidy: clang-tidy found the problems above" >&2
  exit 1
fi
