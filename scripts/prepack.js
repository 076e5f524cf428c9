#!/usr/bin/env node
// npm's prepack (npm pack, npm publish): everything the tarball needs that a clone does not hold.
//   dist/                   the compiled TypeScript (tsc)
//   prebuilds/              the prebuilt CPU addons this machine can make (scripts/prebuild.js)
//   native/fusedpo.gyp      binding.gyp under another name: npm rebuilds any installed package
//                           with a binding.gyp at its root (on npm ci too, whatever "gypfile"
//                           says), so the tarball has none there; `npx fusedpo build` puts it
//                           back for the one build that needs it.
// Any step that fails stops npm pack: a tarball without these is never produced.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
function step(what, command, args) {
  console.error(`prepack: ${what}`);
  const run = spawnSync(command, args, { cwd: root, stdio: ['ignore', 2, 2] });
  if (run.status !== 0) {
    console.error(`prepack: ${what} failed (status ${run.status}); no tarball was made`);
    process.exit(1);
  }
}
step('compiling the TypeScript into dist/', process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']);
step('building the prebuilt addons', process.execPath, [path.join(__dirname, 'prebuild.js')]);
fs.copyFileSync(path.join(root, 'binding.gyp'), path.join(root, 'native', 'fusedpo.gyp'));
console.error('prepack: native/fusedpo.gyp (binding.gyp for npx fusedpo build)');
