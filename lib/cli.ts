#!/usr/bin/env node
/**
 * The `fusedpo` command: `start` and `reproduce` (lib/cli/reproduce.ts), `demo`, `sft` and `train` (lib/cli/train.ts), `eval`,
 * `generate`, `report`, `doctor`, `bench` (lib/cli/bench.ts),
 * `build` (the CPU addon from source).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { UsageError, camelCase, didYouMean, type Flag } from './cli/options';
import { benchCommand } from './cli/bench';
import { EVAL_FLAGS, evalCommand } from './cli/eval';
import { generateCommand } from './cli/generate';
import { reportCommand } from './cli/report';
import { reproduceCommand, startCommand } from './cli/reproduce';
import { SFT_FLAGS, TRAIN_FLAGS, sftCommand, trainCommand } from './cli/train';
import { DEFAULT_DEMO, runDemo } from './demo';
import { doctorReport, formatDoctorReport } from './doctor';
import { FusedpoError, NativeLoadError, NonFiniteLogitError } from './errors';
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
  generate  continue a prompt with a model folder: --model DIR --prompt TEXT [--chat] [--temperature X --seed N]
            (--chat: the prompt is a user message in the model's chat template; it stops at end-of-text)
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

/** Every flag of every command, for naming an option in an error in the user's words. */
const ALL_FLAGS: readonly Flag[] = [...TRAIN_FLAGS, ...SFT_FLAGS, ...EVAL_FLAGS];

/**
 * An error's message in the command line's words: an API option named in it (`for batchSize but
 * received 0 of type number`) becomes the flag the user typed (`for --batch but received 0`).
 */
export function inFlagWords(message: string): string {
  return message.replace(/ for ([A-Za-z][A-Za-z0-9]*) but received (.*?)(?: of type (?:number|string|boolean))?(?=[;,.)]|$)/, (whole, option: string, value: string) => {
    const flag = ALL_FLAGS.find((f) => (f.option ?? camelCase(f.name)) === option);
    return flag ? ` for --${flag.name} but received ${value}` : whole;
  });
}

/** Whether an error is one a user causes with input (printed as one line), rather than a fault of fusedpo. */
function causedByInput(error: Error): boolean {
  if (error instanceof FusedpoError || error instanceof NonFiniteLogitError || error instanceof NativeLoadError) return true;
  // the argument checks (lib/validate.ts and the trainers) all say "Expected ... but received ..."
  if ((error instanceof TypeError || error instanceof RangeError) && /^([\w.]+: )?expected /i.test(error.message)) return true;
  // a system call's failure (a full disk, a permission): its code and message say what happened
  return typeof (error as NodeJS.ErrnoException).code === 'string' && typeof (error as NodeJS.ErrnoException).syscall === 'string';
}

/**
 * Runs a command and turns any error into one line on stderr, never a stack trace (FUSEDPO_DEBUG=1
 * adds it): usage errors exit with status 2, bad input with 1, and anything else is said to be
 * fusedpo's fault, with status 70 (EX_SOFTWARE), so that it is reported.
 */
async function runCommand(command: string, run: () => Promise<void> | void): Promise<void> {
  try {
    await run();
  } catch (error) {
    const debug = process.env.FUSEDPO_DEBUG === '1';
    const err = error instanceof Error ? error : new Error(String(error));
    const prefix = err.message.startsWith('fusedpo ') ? '' : `fusedpo ${command}: `;
    if (err instanceof UsageError) {
      console.error(`${prefix}${err.message}`);
      process.exit(2);
    }
    if (causedByInput(err)) {
      console.error(`${prefix}${inFlagWords(err.message)}`);
      if (debug) console.error(err.stack);
      process.exit(1);
    }
    console.error(`${prefix}internal error: ${err.message} (this is a fault of fusedpo: please report it, with the output of FUSEDPO_DEBUG=1)`);
    if (debug) console.error(err.stack);
    process.exit(70);
  }
}

async function main(argv: string[]): Promise<void> {
  const [command = 'help', ...args] = argv;
  switch (command) {
    case 'start':
      return runCommand('start', () => startCommand(args));
    case 'reproduce':
      return runCommand('reproduce', () => reproduceCommand(args));
    case 'sft':
      return runCommand('sft', () => sftCommand(args));
    case 'train':
      return runCommand('train', () => trainCommand(args));
    case 'eval':
      return runCommand('eval', () => evalCommand(args));
    case 'generate':
      return runCommand('generate', async () => generateCommand(args));
    case 'report':
      return runCommand('report', async () => reportCommand(args));
    case 'bench':
      return runCommand('bench', () => benchCommand(args));
    case 'demo':
      return runCommand('demo', () => demo(args));
    case 'doctor':
      return runCommand('doctor', () => {
        const report = doctorReport();
        console.log(args.includes('--json') ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
        if (report.error) process.exitCode = 1;
      });
    case 'build':
      return runCommand('build', build);
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

// A reader that goes away (`fusedpo report ... | head`) is not an error of ours.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

void main(process.argv.slice(2));
