#!/usr/bin/env bash
# Prepares, on the development machine (nvcc, Node, no GPU), everything the GPU machine needs to
# run bench/gpu/run-device.sh without building or installing anything there (it has no Node.js
# and no registry): the compiled package, both addons, the standalone gpu_check, this machine's
# node binary (xz), the few packages the tests run with, and the peers script.
#
#   bench/gpu/stage.sh [PEERS_DIR]     (default: ../shared/peers beside the repository)
#
# Writes .device/ (ignored by git). Then take to the GPU machine the working tree plus the
# ignored paths .device, dist, build/Release and build-cmake/Release, and run there
#   bash bench/gpu/run-device.sh RESULTS_DIR
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
peers=${1:-$root/../shared/peers}
cd "$root"
mkdir -p .device
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude

npm run compile
npm run build:cuda
bench/gpu/build.sh .device/gpu-check
rm -rf .device/gpu-check/obj

node_bin=$(readlink -f "$(command -v node)")
if [[ ! -s .device/node.xz || $node_bin -nt .device/node.xz ]]; then
  xz -T0 -6 -c "$node_bin" > .device/node.xz
fi

# What `uvu -r tsx/cjs` and the addon loader need at run time, nothing else.
rm -rf .device/node_modules
mkdir -p .device/node_modules/@esbuild
for pkg in tsx esbuild uvu dequal diff kleur sade mri node-gyp-build; do
  cp -r "node_modules/$pkg" .device/node_modules/
done
cp -r node_modules/@esbuild/linux-x64 .device/node_modules/@esbuild/

if [[ -f $peers/gpu_peers.py ]]; then
  cp "$peers/gpu_peers.py" .device/
else
  echo "stage.sh: no gpu_peers.py in $peers: the device run will skip the peers" >&2
fi
du -sh .device dist build/Release build-cmake/Release
