#!/usr/bin/env node
/**
 * The `fusedpo` command: `start` and `reproduce` (lib/cli/reproduce.ts), `demo`, `sft` and `train` (lib/cli/train.ts), `eval`,
 * `generate`, `report`, `doctor`, `bench` (lib/cli/bench.ts),
 * `build` (the CPU addon from source).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { UsageError, didYouMean } from './cli/options';
import { benchCommand } from './cli/bench';
import { evalCommand } from './cli/eval';
import { generateCommand } from './cli/generate';
import { reportCommand } from './cli/report';
import { reproduceCommand, startCommand } from './cli/reproduce';
import { sftCommand, trainCommand } from './cli/train';
import { DEFAULT_DEMO, runDemo } from './demo';
import { doctorReport, formatDoctorReport } from './doctor';
import { LOSS_NAMES, type LossName } from './losses';
import { packageRoot } from './native';
import { version } from './version';

const USAGE = `fusedpo ${version}

usage: fusedpo command [options]

commands:
  start     the whole pipeline on the embedded arithmetic task (what npm start runs): SFT, then DPO
            and MinorDPO at one high learning rate, a before/after table and report.html
  reproduce DPO against MinorDPO (and DPOP, IPO, chipo, DPO + NLL) across learning rates and seeds
            [--quick] [--seed N] [--out DIR]: results.json, results.md, report.html
  demo      the fused DPO and MinorDPO loss, forward and backward, on a built-in batch
            --pairs N (4)  --tokens N (256)  --vocab N (32000)  --loss NAME[,NAME]  --repeats N (3)
  sft       supervised fine-tuning: --data FILE --out DIR [--model DIR | --layers N ...]
  train     preference tuning (DPO, MinorDPO, every loss): --model DIR --data FILE --out DIR [--loss NAME]
            (fusedpo sft --help, fusedpo train --help: every option)
  eval      a model on held-out pairs: --model DIR --data FILE [--ref DIR] (preference, reward and task accuracy)
  generate  continue a prompt with a model folder: --model DIR --prompt TEXT [--temperature X --seed N]
  report    the training report of run folders, overlaid: DIR [DIR...] [--out FILE] (an HTML file with charts)
  doctor    the package version, the binary loaded, the CPU features, and CUDA's state
            --json   print it as JSON
  bench     time the fused loss on this machine against its memory floor, measured in the same run
            [--pairs N --tokens N --vocab N] [--dtype f32|bf16|f16] [--threads N] [--peers] [--json]
  build     build the CPU addon from source into this package (needs g++, make, python3)
  help      this text

environment: FUSEDPO_DEVICE (auto|cpu|cuda), FUSEDPO_THREADS, FUSEDPO_SIMD (avx512|avx2|generic)`;

function fail(message: string): never {
  console.error(`fusedpo: ${message}`);
  process.exit(2);
}

function intOption(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(args[i + 1]);
  if (!Number.isInteger(value) || value < 1) fail(`expected a positive integer after --${name} but received '${args[i + 1] ?? ''}'`);
  return value;
}

function demo(args: string[]): void {
  const i = args.indexOf('--loss');
  let losses = DEFAULT_DEMO.losses;
  if (i >= 0) {
    losses = (args[i + 1] ?? '').split(',') as LossName[];
    const unknown = losses.find((l) => !(LOSS_NAMES as readonly string[]).includes(l) && l !== 'sigmoid');
    if (unknown !== undefined) fail(`expected --loss to name losses among ${LOSS_NAMES.join(', ')} but received '${unknown}'`);
  }
  runDemo({
    ...DEFAULT_DEMO,
    pairs: intOption(args, 'pairs', DEFAULT_DEMO.pairs),
    tokens: intOption(args, 'tokens', DEFAULT_DEMO.tokens),
    vocab: intOption(args, 'vocab', DEFAULT_DEMO.vocab),
    repeats: intOption(args, 'repeats', DEFAULT_DEMO.repeats),
    losses,
  });
}

/** npm ships node-gyp; find it beside the running npm, else on PATH. */
function nodeGypCommand(): string[] {
  const fromEnv = process.env.npm_config_node_gyp;
  if (fromEnv && fs.existsSync(fromEnv)) return [process.execPath, fromEnv];
  const beside = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (fs.existsSync(beside)) return [process.execPath, beside];
  return ['node-gyp'];
}

/**
 * The running Node's own headers, when it ships them (distribution packages and the official
 * tarballs do): node-gyp then builds offline instead of downloading them.
 */
function localNodeHeaders(): string[] {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

/**
 * The CPU addon from source, into build/Release. An installed package has no binding.gyp at its
 * root (npm would rebuild it on every install from a lockfile); its copy native/fusedpo.gyp is
 * put there for this build and taken away after it.
 */
function build(): void {
  const gyp = path.join(packageRoot, 'binding.gyp');
  const shipped = path.join(packageRoot, 'native', 'fusedpo.gyp');
  const placed = !fs.existsSync(gyp);
  if (placed) {
    if (!fs.existsSync(shipped)) fail(`no binding.gyp or native/fusedpo.gyp in ${packageRoot}: this copy of fusedpo cannot be built from source`);
    fs.copyFileSync(shipped, gyp);
  }
  let failure: string | null = null;
  try {
    const [command, ...rest] = nodeGypCommand();
    console.log(`fusedpo: building the CPU addon from source in ${packageRoot}`);
    const args = [...rest, 'rebuild', '-j', 'max', ...localNodeHeaders()];
    const run = spawnSync(command, args, { cwd: packageRoot, stdio: 'inherit' });
    if (run.error) failure = `could not start node-gyp (${run.error.message}); install it with npm install -g node-gyp`;
    else if (run.status !== 0) failure = `node-gyp exited with status ${run.status}; see its output above`;
  } finally {
    if (placed) fs.rmSync(gyp, { force: true });  // never left behind: npm would rebuild on the next install
  }
  if (failure) fail(failure);
  console.log('fusedpo: built build/Release/fusedpo.node; run `npx fusedpo doctor` to check it loads');
}

const COMMANDS = ['start', 'reproduce', 'demo', 'sft', 'train', 'eval', 'generate', 'report', 'doctor', 'bench', 'build', 'help'];

/** A trainer's error: its message, without a stack (the message names the file, line or option). */
async function runTraining(command: string, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message.startsWith('fusedpo ') ? error.message : `fusedpo ${command}: ${error.message}`);
      process.exit(2);
    }
    if (error instanceof Error && ['TypeError', 'RangeError', 'DatasetError', 'TrainingFileError', 'Error'].includes(error.name)) {
      console.error(`fusedpo ${command}: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
}

async function main(argv: string[]): Promise<void> {
  const [command = 'help', ...args] = argv;
  switch (command) {
    case 'start':
      return runTraining('start', () => startCommand(args));
    case 'reproduce':
      return runTraining('reproduce', () => reproduceCommand(args));
    case 'sft':
      return runTraining('sft', () => sftCommand(args));
    case 'train':
      return runTraining('train', () => trainCommand(args));
    case 'eval':
      return runTraining('eval', () => evalCommand(args));
    case 'generate':
      return runTraining('generate', async () => generateCommand(args));
    case 'report':
      return runTraining('report', async () => reportCommand(args));
    case 'bench':
      return runTraining('bench', () => benchCommand(args));
    case 'demo':
      return demo(args);
    case 'doctor': {
      const report = doctorReport();
      console.log(args.includes('--json') ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
      if (report.error) process.exitCode = 1;
      return;
    }
    case 'build':
      return build();
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    case '--version':
      console.log(version);
      return;
    default: {
      const near = didYouMean(command, COMMANDS);
      fail(`unknown command '${command}'${near ? ` (did you mean '${near}'?)` : ''}\n\n${USAGE}`);
    }
  }
}

void main(process.argv.slice(2));
