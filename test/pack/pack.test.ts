/**
 * The test of "npm install gets a prebuilt binary that just works": `npm pack` alone (its
 * prepack compiles dist/ and the prebuilt addons, linux-x64 and the cross-built linux-arm64),
 * then the tarball installed into new apps on a PATH with no compiler, make or python: with npm's
 * defaults (install scripts blocked), with fusedpo approved in the app's allowScripts, then
 * `npm ci` from the lockfile; each imports and requires it and calls the native functions. The
 * README's examples type-check in a strict app with no @types/node. The optional CUDA package,
 * when the CUDA addon was built, installs beside it and is found.
 *
 * Run by `npm run test:pack` and by .ci/run (after the arm64 and CUDA builds' prerequisites).
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

// A test, not a before hook: uvu swallows an error thrown by a hook (its runner returns from a
// finally block) and then passes with status 0, having run nothing.
test('npm pack alone makes one tarball (its prepack builds dist/, both prebuilt addons and native/fusedpo.gyp)', () => {
  execFileSync('npm', ['pack', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const packed = fs.readdirSync(work).filter((f) => f.endsWith('.tgz'));
  assert.is(packed.length, 1, `one tarball: ${packed}`);
  tarball = path.join(work, packed[0]);
  cleanPath = pathWithoutCompilers();
  console.log(`  tarball ${packed[0]}: ${(fs.statSync(tarball).size / 1024).toFixed(0)} KiB; prebuilds ${['linux-x64', 'linux-arm64'].map((p) =>
    `${p} ${(fs.statSync(path.join(root, 'prebuilds', p, 'fusedpo.node')).size / 1024).toFixed(0)} KiB`).join(', ')}`);
});

/** The bytes of one file of the tarball. */
function fromTarball(file: string): Buffer {
  return execFileSync('tar', ['-xzOf', tarball, file], { maxBuffer: 64 * 2 ** 20 });
}

test('docs/install.md gives this tarball\'s sizes, within 20 % (tarball, linux-x64 and linux-arm64 addons); the tarball holds the LICENSE', () => {
  const doc = fs.readFileSync(path.join(root, 'docs', 'install.md'), 'utf8');
  const stated = /the\s+tarball\s+is\s+([0-9]+)\s+KiB;\s+in\s+it\s+the\s+linux-x64\s+addon\s+is\s+([0-9]+)\s+KiB\s+and\s+the\s+linux-arm64\s+one\s+([0-9]+)\s+KiB/.exec(doc);
  assert.ok(stated, 'docs/install.md states the sizes in the sentence this test reads');
  const actual = [fs.statSync(tarball).size, ...['linux-x64', 'linux-arm64'].map((p) => fs.statSync(path.join(root, 'prebuilds', p, 'fusedpo.node')).size)].map((b) => b / 1024);
  ['tarball', 'linux-x64 addon', 'linux-arm64 addon'].forEach((what, k) => {
    const written = Number(stated![k + 1]);
    assert.ok(Math.abs(written - actual[k]) <= 0.2 * actual[k], `${what}: docs/install.md says ${written} KiB, npm pack made ${actual[k].toFixed(0)} KiB`);
  });
  const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
  assert.ok(listing.includes('package/LICENSE'), 'the license the package declares (MIT) ships with it');
});

test('the installing PATH has no compiler, make or python', () => {
  for (const tool of ['g++', 'gcc', 'cc', 'make', 'python3', 'python']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: cleanPath }, encoding: 'utf8' });
    assert.is.not(found.status, 0, `${tool} is still on PATH: ${found.stdout}`);
  }
});

test('the tarball ships the prebuilt binaries (linux-x64, linux-arm64), the compiled JS and the types; no binding.gyp at its root', () => {
  const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n');
  const files = ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/cli.js', 'package/dist/cli/bench.js', 'package/native/fusedpo.gyp',
    'package/prebuilds/linux-x64/fusedpo.node', 'package/prebuilds/linux-arm64/fusedpo.node', 'package/examples/data/preferences.jsonl',
    'package/docs/losses.md'];
  for (const file of files) assert.ok(listing.includes(file), `${file} missing from the tarball:\n${listing.join('\n')}`);
  for (const platform of ['linux-x64', 'linux-arm64']) {
    assert.equal(listing.filter((f) => f.startsWith(`package/prebuilds/${platform}/`)), [`package/prebuilds/${platform}/fusedpo.node`],
      'node-gyp-build takes any .node file in its folder: only the CPU addon may be there');
  }
  const machine = (file: string) => fromTarball(file).readUInt16LE(18);  // ELF e_machine
  assert.is(machine('package/prebuilds/linux-x64/fusedpo.node'), 62, 'linux-x64: an x86-64 ELF (EM_X86_64)');
  assert.is(machine('package/prebuilds/linux-arm64/fusedpo.node'), 183, 'linux-arm64: an aarch64 ELF (EM_AARCH64)');
  assert.not.ok(listing.includes('package/binding.gyp'), 'a binding.gyp at the root: npm would rebuild the package on every lockfile install');
  assert.not.ok(listing.some((f) => f.startsWith('package/build/')), 'a local build/ folder was packed');
  assert.not.ok(listing.some((f) => f.endsWith('fusedpo-cuda.node')), 'the CUDA addon belongs to its optional package');
  const map = JSON.parse(fromTarball('package/dist/index.js.map').toString()) as { sourcesContent?: string[] };
  assert.ok(map.sourcesContent?.[0]?.includes('export'), 'source maps carry their TypeScript: stack traces map to files a user has');
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
    if (mode === 'defaults') {
      // The installed package benchmarks itself: no bench/, no compiler (the prebuilt addon's probe).
      const bench = run(app, 'npx', ['--no-install', 'fusedpo', 'bench', '--pairs', '1', '--tokens', '4', '--vocab', '50', '--repeats', '1', '--probe-mib', '8', '--json']);
      const timed = JSON.parse(bench.slice(bench.indexOf('{'), bench.lastIndexOf('}') + 1)) as { bandwidth: { readGBps: number }; rows: { fwdBwdMs: number }[] };
      assert.ok(timed.bandwidth.readGBps > 0 && timed.rows.length === 2 && timed.rows.every((r) => r.fwdBwdMs > 0), bench);
    }
  });
}

for (const mode of ['defaults', 'allowScripts'] as const) test(`npm ci from the lockfile (${mode}), after rm -rf node_modules, no compiler: nothing is built, and it works`, () => {
  const app = path.join(work, `app-${mode}`);
  assert.ok(fs.existsSync(path.join(app, 'package-lock.json')), 'the install wrote a lockfile');
  fs.rmSync(path.join(app, 'node_modules'), { recursive: true, force: true });
  const log = run(app, 'npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts']);
  assert.not.match(log, /gyp (ERR|info)|node-gyp/, `npm ci built from source:\n${log}`);
  assert.not.ok(fs.existsSync(path.join(app, 'node_modules', 'fusedpo', 'build')), 'a build/ folder appeared on npm ci');
  assert.match(run(app, 'node', ['-e', USE_CJS]), 'cjs ok');
});

test("the README's TypeScript examples type-check in a strict app without @types/node", () => {
  const app = path.join(work, 'app-defaults');
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  const dir = path.join(app, 'readme');
  fs.mkdirSync(dir, { recursive: true });
  blocks.forEach((code, i) => fs.writeFileSync(path.join(dir, `example-${i}.ts`), `export {};\n${code}`));
  // the app's own declaration of console: ES2022 has none, and this app has neither DOM nor Node types
  fs.writeFileSync(path.join(dir, 'console.d.ts'), 'declare const console: { log(...values: unknown[]): void; error(...values: unknown[]): void };\n');
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, types: [], lib: ['ES2022'], target: 'ES2022', module: 'node16', moduleResolution: 'node16', skipLibCheck: false },
    include: ['*.ts'],
  }, null, 2));
  const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: app, encoding: 'utf8' });
  assert.is(tsc.status, 0, `tsc with types: [] failed:\n${tsc.stdout}${tsc.stderr}`);
});

test('the optional CUDA package installs beside fusedpo and is the one the loader finds', () => {
  if (!fs.existsSync(path.join(root, 'build-cmake', 'Release', 'fusedpo-cuda.node'))) {
    console.log('  (no CUDA addon built here: npm run build:cuda; skipped)');
    return;
  }
  const packed = execFileSync(process.execPath, [path.join(root, 'scripts', 'pack-cuda.js'), work], { cwd: root, encoding: 'utf8' });
  console.log(`  ${packed.trim()}`);
  const cudaTarball = fs.readdirSync(work).find((f) => f.startsWith(`fusedpo-cuda-${process.platform}-${process.arch}-`) && f.endsWith('.tgz'))!;
  const app = path.join(work, 'app-cuda');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app-cuda', version: '1.0.0', private: true }));
  run(app, 'npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, path.join(work, cudaTarball)]);
  const doctor = run(app, 'npx', ['--no-install', 'fusedpo', 'doctor', '--json']);
  const report = JSON.parse(doctor.slice(doctor.indexOf('{'))) as { binary: { path: string; kind: string } | null; cuda: unknown };
  // With no usable GPU the CPU addon runs, and doctor says which CUDA addon it tried and why not.
  assert.match(JSON.stringify(report), new RegExp(`node_modules/fusedpo-cuda-${process.platform}-${process.arch}/fusedpo-cuda\\.node`), doctor);
  assert.match(run(app, 'node', ['-e', USE_CJS]), 'cjs ok');
});

test('npx fusedpo build: the explicit source build of an installed package, then used', () => {
  // Compilers allowed here: this is the fallback for a platform with no prebuild.
  const app = path.join(work, 'app-defaults');
  const installed = path.join(app, 'node_modules', 'fusedpo');
  const env = { ...process.env, npm_config_nodedir: '', FUSEDPO_DEVICE: 'cpu' };
  const build = spawnSync('npx', ['--no-install', 'fusedpo', 'build'], { cwd: app, encoding: 'utf8', env });
  assert.is(build.status, 0, `fusedpo build failed:\n${build.stdout}\n${build.stderr}`);
  assert.ok(fs.existsSync(path.join(installed, 'build', 'Release', 'fusedpo.node')), 'no build/Release/fusedpo.node');
  assert.not.ok(fs.existsSync(path.join(installed, 'binding.gyp')), 'the build left a binding.gyp behind: npm would rebuild on the next install');
  const doctor = spawnSync('npx', ['--no-install', 'fusedpo', 'doctor'], { cwd: app, encoding: 'utf8', env });
  assert.match(doctor.stdout, /binary: +cpu addon, .*build\/Release\/fusedpo\.node/, 'the local build comes first');
  const use = spawnSync('node', ['-e', USE_CJS], { cwd: app, encoding: 'utf8', env });
  assert.is(use.status, 0, use.stderr);
});

test.after(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

test.run();
