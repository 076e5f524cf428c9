#!/usr/bin/env node
// npm run docs:figures: the example outputs of docs/evaluation.md (fusedpo eval's table, and the
// summary fusedpo train prints at its end), from a run of the README's commands on this machine,
// written between the doc's markers:
//
//   <!-- figures:eval:begin --> ... <!-- figures:eval:end -->
//   <!-- figures:summary:begin --> ... <!-- figures:summary:end -->
//
// test/train/cli.test.ts runs the same commands and checks every number of those blocks against
// its own run within TOLERANCE (the blocks then say what the package does, not what it did once).
// The run's SIMD path is written in the markers (`<!-- figures:eval:begin simd=avx512 -->`): the
// paths, and the sanitizers' build, round differently, and over 300 steps of training that moves
// the greedy task accuracy by a few of its 20 pairs, so the test compares on that path only.
// Needs dist/ (npm run compile).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const CLI = path.join(root, 'dist', 'cli.js');
const DOC = path.join(root, 'docs', 'evaluation.md');

/** |doc - run| <= ABSOLUTE + RELATIVE * |run|, for every number of a block: rounding between SIMD paths, not a stale figure. */
const TOLERANCE = { absolute: 0.1, relative: 0.1 };

/** The `npx fusedpo ...` lines of the README's "Preference-tune a model" section, in order, with the package's files pointed at this folder. */
function readmeCommands() {
  const text = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  // the section that trains on the package's own data; the Hugging Face section's commands need a downloaded model
  const start = text.indexOf('## Preference-tune a model');
  const end = text.indexOf('### From a Hugging Face folder', start);
  const readme = text.slice(start, end < 0 ? undefined : end);
  return readme.split('\n').filter((line) => /^npx fusedpo (sft|train|eval|generate|report) /.test(line))
    .map((line) => line.replace(/^npx fusedpo /, '').split(/\s+/).map((a) => a.replace(/^node_modules\/fusedpo\//, `${root}/`)));
}

/** The lines of the end-of-training summary in a train run's stderr: from the loss sparkline to the line before "report:". */
function summaryLines(stderr) {
  const lines = stderr.split('\n');
  const start = lines.findIndex((l) => /^loss {20}/.test(l));
  const end = lines.findIndex((l, i) => i > start && l.startsWith('report: '));
  return start < 0 || end < 0 ? null : lines.slice(start, end).join('\n');
}

/**
 * Runs the README's commands in `cwd` (sft and train with `quiet` as given); returns each one's
 * output and the two figure blocks: eval's stdout and train's summary.
 */
function runReadme(cwd, { quiet = false } = {}) {
  const outputs = [];
  for (const args of readmeCommands()) {
    const extra = quiet && (args[0] === 'sft' || args[0] === 'train') ? ['--quiet'] : [];
    const run = spawnSync(process.execPath, [CLI, ...args, ...extra], { cwd, encoding: 'utf8', env: { ...process.env, FUSEDPO_THREADS: process.env.FUSEDPO_THREADS ?? '2' } });
    if (run.status !== 0) throw new Error(`fusedpo ${args.join(' ')} failed (${run.status}):\n${run.stderr}`);
    outputs.push({ args, stdout: run.stdout, stderr: run.stderr });
  }
  const evaluation = outputs.find((o) => o.args[0] === 'eval');
  const training = outputs.find((o) => o.args[0] === 'train');
  return { outputs, figures: { eval: evaluation.stdout.trimEnd(), summary: quiet ? null : summaryLines(training.stderr) } };
}

/** A block of the doc: its text (without its fence) and the SIMD path it was made on; null without its markers. */
function docBlock(doc, name) {
  const match = new RegExp(`<!-- figures:${name}:begin simd=([a-z0-9]+) -->\\n\`\`\`\\n([\\s\\S]*?)\\n\`\`\`\\n<!-- figures:${name}:end -->`).exec(doc);
  return match ? { simd: match[1], text: match[2] } : null;
}

function withBlock(doc, name, text, simd) {
  if (docBlock(doc, name) === null) throw new Error(`docs/evaluation.md has no figures:${name} markers`);
  return doc.replace(new RegExp(`<!-- figures:${name}:begin simd=[a-z0-9]+ -->\\n\`\`\`\\n[\\s\\S]*?\\n\`\`\`\\n<!-- figures:${name}:end -->`),
    () => `<!-- figures:${name}:begin simd=${simd} -->\n\`\`\`\n${text}\n\`\`\`\n<!-- figures:${name}:end -->`);
}

/** The SIMD path this machine's build runs (what fusedpo doctor says), or null where no addon loads. */
function simdPath() {
  const run = spawnSync(process.execPath, [CLI, 'doctor', '--json'], { encoding: 'utf8' });
  try {
    return JSON.parse(run.stdout).cpu?.simd ?? null;
  } catch {
    return null;
  }
}

/**
 * The differences between a doc block and a run's, line by line: the same lines with their numbers
 * within TOLERANCE (the words, sparklines and paths are not compared). None: the doc is current.
 */
function compareFigures(documented, measured) {
  const number = /-?[0-9]+\.[0-9]+/g;
  const a = documented.split('\n'), b = measured.split('\n');
  if (a.length !== b.length) return [`${a.length} lines in the doc, ${b.length} in the run`];
  const out = [];
  a.forEach((line, i) => {
    const x = line.match(number) ?? [], y = b[i].match(number) ?? [];
    if (x.length !== y.length) return out.push(`line ${i + 1}: ${x.length} numbers in the doc, ${y.length} in the run:\n  ${line}\n  ${b[i]}`);
    x.forEach((v, k) => {
      const doc = Number(v), run = Number(y[k]);
      if (Math.abs(doc - run) > TOLERANCE.absolute + TOLERANCE.relative * Math.abs(run)) out.push(`line ${i + 1}: ${doc} in the doc, ${run} in the run`);
    });
  });
  return out;
}

module.exports = { TOLERANCE, readmeCommands, runReadme, docBlock, compareFigures, simdPath };

if (require.main === module) {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-doc-figures-'));
  try {
    const { figures } = runReadme(cwd);
    const simd = simdPath();
    let doc = fs.readFileSync(DOC, 'utf8');
    doc = withBlock(doc, 'eval', figures.eval, simd);
    doc = withBlock(doc, 'summary', figures.summary, simd);
    fs.writeFileSync(DOC, doc);
    console.log(`docs/evaluation.md: the eval table and the training summary of this run (the ${simd} path)\n\n${figures.eval}\n\n${figures.summary}`);
  } finally {
    fs.rmSync(cwd, { recursive: true, force: true });
  }
}
