#!/usr/bin/env node
// `npm run pack:cuda [DESTINATION]`: the optional package fusedpo-cuda-<platform>-<arch>, which
// holds the CUDA addon built by `npm run build:cuda`, packed beside the main tarball. The main
// package's loader finds it when it is installed (lib/native.ts, CUDA_PACKAGE); without it the
// CPU addon runs alone. Kept out of the main tarball for its size (docs/install.md).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const addon = path.join(root, 'build-cmake', 'Release', 'fusedpo-cuda.node');
if (!fs.existsSync(addon)) {
  console.error('pack:cuda: no build-cmake/Release/fusedpo-cuda.node: run npm run build:cuda first (it needs nvcc)');
  process.exit(1);
}
const main = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const name = `fusedpo-cuda-${process.platform}-${process.arch}`;
const folder = path.join(root, 'build-cmake', 'cuda-package');
fs.rmSync(folder, { recursive: true, force: true });
fs.mkdirSync(folder, { recursive: true });
fs.copyFileSync(addon, path.join(folder, 'fusedpo-cuda.node'));
execFileSync('strip', [path.join(folder, 'fusedpo-cuda.node')]);
fs.writeFileSync(path.join(folder, 'package.json'), `${JSON.stringify({
  name, version: main.version, license: main.license,
  description: `The CUDA addon of fusedpo ${main.version} for ${process.platform}-${process.arch} (NVIDIA GPUs, compute capability 8.0 and up); install it beside fusedpo`,
  os: [process.platform], cpu: [process.arch], files: ['fusedpo-cuda.node', 'README.md'],
}, null, 2)}\n`);
fs.writeFileSync(path.join(folder, 'README.md'), `# ${name}\n\nThe CUDA addon of [fusedpo](https://www.npmjs.com/package/fusedpo) ${main.version}. ` +
  `Install it beside fusedpo of the same version:\n\n    npm install fusedpo@${main.version} ${name}@${main.version}\n\n` +
  '`npx fusedpo doctor` then reports the CUDA addon and the devices it sees.\n');
const destination = path.resolve(process.argv[2] ?? root);
const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', destination], { cwd: folder, encoding: 'utf8' }));
const file = path.join(destination, packed[0].filename);
console.log(`pack:cuda: ${path.relative(process.cwd(), file) || file} (${fs.statSync(file).size} bytes; the addon ${fs.statSync(path.join(folder, 'fusedpo-cuda.node')).size} bytes stripped)`);
