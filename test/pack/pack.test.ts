/**
 * The test of "npm install gets a prebuilt binary that just works": pack the package (after
 * `npm run prebuild`), install the tarball into new apps on a PATH with no compiler, make or
 * python, once with npm's defaults (install scripts blocked) and once with fusedpo approved in
 * the app's allowScripts, then import and require it and call the native functions.
 *
 * Run by `npm run test:pack` (which runs the prebuild first) and by .ci/run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(__dirname, '..', '..');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-pack-'));

/** Tools that could build a native addon: none of them may be on the installing PATH. */
const BUILD_TOOLS = /^(cc|c\+\+|cpp|gcc.*|g\+\+.*|.*-gcc(-\d+)?|.*-g\+\+(-\d+)?|clang.*|ld|ld\..*|make|gmake|cmake|ninja|python.*|nvcc|node-gyp)$/;

/** A folder of links to every program on PATH except the build tools. */
function pathWithoutCompilers(): string {
  const bin = path.join(work, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir || !fs.existsSync(dir)) continue;
    for (const name of fs.readdirSync(dir)) {
      if (BUILD_TOOLS.test(name) || fs.existsSync(path.join(bin, name))) continue;
      const target = path.join(dir, name);
      try {
        if (fs.statSync(target).isFile()) fs.symlinkSync(target, path.join(bin, name));
      } catch {
        // a dangling link on PATH: skip it
      }
    }
  }
  // npm is a Node script: make sure the very node running this test is the one found first.
  fs.rmSync(path.join(bin, 'node'), { force: true });
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  return bin;
}

let tarball = '';
let cleanPath = '';

function run(cwd: string, command: string, args: string[]): string {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, PATH: cleanPath, npm_config_nodedir: '', npm_config_node_gyp: '' },
  });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.status}) in ${cwd}:\n${result.stdout}\n${result.stderr}`);
  }
  return result.stdout + result.stderr;
}

const USE_CJS = `
const fusedpo = require('fusedpo');
const r = fusedpo.sequenceLogps({ logits: new Float32Array([0, 0, 1, 2]), shape: [1, 2, 2], labels: new Int32Array([1, 0]) });
const want = -Math.log(2) + (1 - 2 - Math.log1p(Math.exp(-1)));
if (Math.abs(r.logps[0] - want) > 1e-5) throw new Error('sequenceLogps gave ' + r.logps[0] + ', expected ' + want);
const l = fusedpo.preferenceLoss({ loss: 'minordpo', logits: new Float32Array(2 * 3 * 5), shape: [2, 3, 5],
  labels: new Int32Array([0, 1, -100, 2, 3, 4]), refLogps: new Float32Array([-2 * Math.log(5), -3 * Math.log(5)]) });
if (!(Math.abs(l.loss - Math.log(2)) < 1e-6)) throw new Error('loss ' + l.loss);
console.log('cjs ok', require.resolve('fusedpo'));
`;

const USE_ESM = `
import { preferenceLoss, sequenceLogps, doctorReport } from 'fusedpo';
import fusedpo from 'fusedpo';
const r = sequenceLogps({ logits: new Float32Array([0, 0]), shape: [1, 1, 2], labels: new Int32Array([1]) });
if (Math.abs(r.logps[0] + Math.log(2)) > 1e-6) throw new Error('sequenceLogps ' + r.logps[0]);
if (typeof preferenceLoss !== 'function' || fusedpo.preferenceLoss !== preferenceLoss) throw new Error('esm exports');
const report = doctorReport();
if (!report.binary || !report.binary.path.includes('prebuilds')) throw new Error('expected the prebuilt binary, got ' + JSON.stringify(report.binary));
console.log('esm ok', report.binary.path);
`;

test.before(() => {
  const prebuilds = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  assert.ok(fs.existsSync(prebuilds), `no ${prebuilds}: run npm run prebuild first`);
  const packed = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8' });
  tarball = path.join(work, (JSON.parse(packed) as { filename: string }[])[0].filename);
  cleanPath = pathWithoutCompilers();
});

test('the installing PATH has no compiler, make or python', () => {
  for (const tool of ['g++', 'gcc', 'cc', 'make', 'python3', 'python']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: cleanPath }, encoding: 'utf8' });
    assert.is.not(found.status, 0, `${tool} is still on PATH: ${found.stdout}`);
  }
});

test('the tarball ships the prebuilt binary, the compiled JS and the types', () => {
  const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' });
  const files = ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/cli.js',
    `package/prebuilds/${process.platform}-${process.arch}/fusedpo.node`];
  // The CUDA addon ships when it was built (.ci/run builds it; it must compile even with no GPU).
  if (fs.existsSync(path.join(root, 'build-cmake', 'Release', 'fusedpo-cuda.node'))) {
    files.push(`package/prebuilds/${process.platform}-${process.arch}-cuda/fusedpo-cuda.node`);
  }
  for (const file of files) {
    assert.ok(listing.includes(file), `${file} missing from the tarball:\n${listing}`);
  }
  const cpuFolder = listing.split('\n').filter((f) => f.startsWith(`package/prebuilds/${process.platform}-${process.arch}/`));
  assert.equal(cpuFolder, [`package/prebuilds/${process.platform}-${process.arch}/fusedpo.node`],
    'node-gyp-build takes any .node file in its folder: only the CPU addon may be there');
  assert.not.ok(listing.includes('package/build/'), 'a local build/ folder was packed');
});

for (const mode of ['defaults', 'allowScripts'] as const) {
  test(`npm install of the tarball with ${mode === 'defaults' ? "npm's defaults" : 'fusedpo approved in allowScripts'}, no compiler`, () => {
    const app = path.join(work, `app-${mode}`);
    fs.mkdirSync(app);
    const manifest: Record<string, unknown> = { name: `app-${mode.toLowerCase()}`, version: '1.0.0', private: true };
    if (mode === 'allowScripts') manifest.allowScripts = { fusedpo: true };
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(manifest, null, 2));
    const log = run(app, 'npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball]);
    assert.not.match(log, /gyp (ERR|info)/, `npm tried to build from source:\n${log}`);
    const installed = path.join(app, 'node_modules', 'fusedpo');
    assert.not.ok(fs.existsSync(path.join(installed, 'build')), 'a build/ folder appeared: something compiled on install');
    assert.match(run(app, 'node', ['-e', USE_CJS]), 'cjs ok');
    fs.writeFileSync(path.join(app, 'use.mjs'), USE_ESM);
    assert.match(run(app, 'node', ['use.mjs']), 'esm ok');
    const doctor = run(app, 'npx', ['--no-install', 'fusedpo', 'doctor']);
    assert.match(doctor, /binary: +cpu addon, .*prebuilds\/[a-z0-9]+-[a-z0-9]+\/fusedpo\.node/);
  });
}

test('npx fusedpo build: the explicit source build of an installed package, then used', () => {
  // Compilers allowed here: this is the fallback for a platform with no prebuild.
  const app = path.join(work, 'app-defaults');
  const installed = path.join(app, 'node_modules', 'fusedpo');
  const env = { ...process.env, npm_config_nodedir: '', FUSEDPO_DEVICE: 'cpu' };
  const build = spawnSync('npx', ['--no-install', 'fusedpo', 'build'], { cwd: app, encoding: 'utf8', env });
  assert.is(build.status, 0, `fusedpo build failed:\n${build.stdout}\n${build.stderr}`);
  assert.ok(fs.existsSync(path.join(installed, 'build', 'Release', 'fusedpo.node')), 'no build/Release/fusedpo.node');
  const doctor = spawnSync('npx', ['--no-install', 'fusedpo', 'doctor'], { cwd: app, encoding: 'utf8', env });
  assert.match(doctor.stdout, /binary: +cpu addon, .*build\/Release\/fusedpo\.node/, 'the local build comes first');
  const use = spawnSync('node', ['-e', USE_CJS], { cwd: app, encoding: 'utf8', env });
  assert.is(use.status, 0, use.stderr);
});

test.after(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

test.run();
