#!/usr/bin/env node
// `npm run prebuild` (and `npm pack` / `npm publish`, through prepack): the prebuilt CPU addons
// this machine can make, into prebuilds/<platform>-<arch>/fusedpo.node, with prebuildify.
//
// On linux-x64: linux-x64 (the host compiler) and linux-arm64 (cross-compiled with Debian's
// aarch64 toolchain, g++-aarch64-linux-gnu). Elsewhere (the release workflow's macOS and Windows
// runners): the host platform only. A platform that cannot be built stops the script with what
// is missing and how to get it: a tarball without its binaries is never produced.
//
// The host build goes last, so that build/Release ends as this machine's own addon.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const prebuildify = path.join(root, 'node_modules', 'prebuildify', 'bin.js');

function fail(message) {
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** node-gyp: the one npm runs scripts with, else npm's own bundled copy beside this Node, else PATH's. */
function nodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && fs.existsSync(fromNpm)) return fromNpm;
  const bundled = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (fs.existsSync(bundled)) return bundled;
  if (has('node-gyp')) return 'node-gyp';
  fail('node-gyp was not found (npm ships one; or npm install -g node-gyp)');
}

function build(arch, env, strip) {
  console.log(`prebuild: ${process.platform}-${arch}`);
  // Node-API: one binary for every Node version; built against this Node's headers, offline
  // when it ships them (distribution packages and the official tarballs do).
  const args = [prebuildify, '--napi', '--strip', `--target=${process.versions.node}`, `--arch=${arch}`, `--node-gyp=${nodeGyp()}`,
    ...(strip ? [`--strip-bin=${strip}`] : [])];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const headers = !process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? { npm_config_nodedir: prefix } : {};
  const run = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...headers, ...env } });
  if (run.status !== 0) fail(`prebuildify for ${process.platform}-${arch} exited with status ${run.status}; see its output above`);
  const file = path.join(root, 'prebuilds', `${process.platform}-${arch}`, 'fusedpo.node');
  if (!fs.existsSync(file)) fail(`expected ${path.relative(root, file)} after prebuildify, but it is not there`);
  console.log(`prebuild: placed ${path.relative(root, file)} (${fs.statSync(file).size} bytes)`);
}

if (!fs.existsSync(prebuildify)) fail('prebuildify is not installed: run npm install first');
const targets = [];
if (process.platform === 'linux' && process.arch === 'x64') {
  const cross = { CC: 'aarch64-linux-gnu-gcc', CXX: 'aarch64-linux-gnu-g++', LINK: 'aarch64-linux-gnu-g++', AR: 'aarch64-linux-gnu-ar' };
  if (!has(cross.CXX)) {
    fail(`the linux-arm64 addon needs the aarch64 cross compiler (${cross.CXX}), which is not on PATH.\n` +
      '  Debian or Ubuntu: apt-get install g++-aarch64-linux-gnu\n' +
      '  (the package ships a linux-arm64 binary: it is never packed without one)');
  }
  targets.push(() => build('arm64', cross, 'aarch64-linux-gnu-strip'));
}
targets.push(() => build(process.arch, {}, null));
for (const target of targets) target();
