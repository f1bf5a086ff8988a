#!/usr/bin/env bash
# Installs the Debian packages gangway's build, tests and demo use. Idempotent and quiet: when
# everything is present it does nothing; otherwise it runs `apt-get update` once and installs what
# is missing. See DESIGN.md's "Chosen dependencies" for why each is there.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build git clang-format clang-tidy
  # libraries (DESIGN.md): status/strings, CLI, logs, JSON, tests
  libabsl-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libgtest-dev
  # RPC and wire format for the control plane
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # HMAC-SHA256 of the workers' store tokens; the test CA and certificates (openssl)
  libssl-dev openssl
  # the scheduler's state: CRC-32 of the embedded store's log records; a real etcd for the tests
  zlib1g-dev etcd-server etcd-client
  # topology: NCCL's topology XML, RDMA NICs, NUMA memory policy for workers
  libtinyxml2-dev libibverbs-dev libnuma-dev
  # collectives: UCX transport, Open MPI backend and comparison
  libucx-dev ucx-utils libopenmpi-dev openmpi-bin
  # libgangway_kv: XXH3 block hashes, the Python module
  libxxhash-dev pybind11-dev python3-dev
  # benches/comm/compare's plot
  python3-matplotlib
  # real PyTorch for the demo and the tests (run with /usr/bin/python3)
  python3-torch
  # process and network tools the tests use (setsid, pgrep, ip netns)
  util-linux procps iproute2 openssl
)
# the manifest validator (deploy/validate): Node.js and kubectl, Debian's only when not on PATH
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
command -v kubectl >/dev/null || packages+=(kubernetes-client)  # kubectl 1.20: too old, it says

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# The validator's npm packages, when node_modules is missing or older than the lock file.
npm_packages() {
  local dir stamp
  dir="$(dirname "$0")/../deploy/validate"
  stamp="$dir/node_modules/.package-lock.json"  # npm writes it on every install
  [ -e "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ] && return 0
  echo "deps.sh: installing deploy/validate's npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error --prefix "$dir" >/dev/null
}
[ ${#missing[@]} -eq 0 ] && { npm_packages; exit 0; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_packages
