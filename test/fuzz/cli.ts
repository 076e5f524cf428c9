/**
 * The fuzz target of the command line (test/fuzz-cli.test.ts, `npm run fuzz:cli`): programs of
 * hostile records, flags, folders and signals, each run as a user runs `fusedpo` (the built
 * dist/cli.js, in a sandbox folder of its own), judged by what the user sees and what happens to
 * their files. The oracle:
 *
 * - it ends within the time limit (else `hang`), with status 0, 1 or 2, or 130 / 143 after a
 *   signal (or killed by the signal, which the default disposition does before training starts,
 *   and a second signal does at any time); anything else is a `crash`;
 * - stderr holds no stack trace and no "internal error" (else `unclearError`), and a refusal
 *   (1, 2) ends with one line that names the command;
 * - no file outside the run folder changed, appeared or went, and in the run folder no file a
 *   run does not write (else `damage`); the cache folder and a new default `runs/` folder are
 *   the run's to write;
 * - status 0 from sft or train left a model and one metrics line per step (else `wrong`).
 *
 * Programs are plain data made by fast-check from a seed, so a failure replays by its id.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fc from 'fast-check';

import { isRunEntry } from '../../lib/train/run_folder';
import { CLI } from '../cli';
import { changes, modelFolder, snapshot, TINY } from '../support/runs';

/** One kind of line of a data file. */
export type RecordKind =
  | 'good' | 'goodConversation' | 'emptyChosen' | 'equal' | 'duplicateKey' | 'invalidUtf8' | 'notJson' | 'array' | 'number'
  | 'longPrompt' | 'longLine' | 'blank' | 'crlf' | 'bom' | 'deep' | 'badRole' | 'nul' | 'emptyPrompt';

export type OutKind = 'none' | 'new' | 'emptyFolder' | 'userFiles' | 'model' | 'insideModel' | 'dataFile' | 'holdsData' | 'file' | 'finishedRun' | 'stoppedRun';

export interface CliProgram {
  id: number;
  command: 'train' | 'sft' | 'eval' | 'generate' | 'report';
  records: RecordKind[];
  evalRecords: RecordKind[] | null;
  out: OutKind;
  /** Flags as they are typed (values included), in order. */
  flags: string[];
  /**
   * A signal sent once or twice, `delayMs` after the start (`when: 'start'`) or after the run's
   * metrics.jsonl appears (`'training'`: the signal lands in the training loop).
   */
  signal: { name: 'SIGINT' | 'SIGTERM'; when: 'start' | 'training'; delayMs: number; twice: boolean } | null;
}

export type CliVerdict = 'ok' | 'clearError' | 'interrupted' | 'unclearError' | 'crash' | 'hang' | 'damage' | 'wrong';
export const CLI_FAILURES: readonly CliVerdict[] = ['unclearError', 'crash', 'hang', 'damage', 'wrong'];

export interface CliJudged {
  program: CliProgram;
  verdict: CliVerdict;
  detail: string;
}

// ---- Programs ------------------------------------------------------------------------------------

/** The bytes of one line of a kind (the k-th of the file, so that pairs differ). */
function lineOf(kind: RecordKind, k: number, forSft: boolean): Buffer {
  const a = k % 10, b = (k * 7) % 10;
  const prompt = `${a}+${b}=`, chosen = String(a + b), rejected = String(a + b + 1);
  const record = forSft ? { prompt, completion: chosen } : { prompt, chosen, rejected };
  const json = (value: unknown) => Buffer.from(`${JSON.stringify(value)}\n`);
  switch (kind) {
    case 'good': return json(record);
    case 'goodConversation': return json(forSft
      ? { messages: [{ role: 'user', content: prompt }, { role: 'assistant', content: chosen }] }
      : { prompt: [{ role: 'user', content: prompt }], chosen: [{ role: 'assistant', content: chosen }], rejected: [{ role: 'assistant', content: rejected }] });
    case 'emptyChosen': return json(forSft ? { prompt, completion: '' } : { prompt, chosen: '', rejected });
    case 'emptyPrompt': return json(forSft ? { prompt: '', completion: chosen } : { prompt: '', chosen, rejected });
    case 'equal': return json(forSft ? { text: '' } : { prompt, chosen, rejected: chosen });
    case 'duplicateKey': return Buffer.from(forSft ? `{"prompt":"${prompt}","completion":"1","completion":"2"}\n` : `{"prompt":"${prompt}","chosen":"1","rejected":"2","chosen":"3"}\n`);
    case 'invalidUtf8': return Buffer.concat([Buffer.from(`{"prompt":"${prompt}","${forSft ? 'completion' : 'chosen'}":"`), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(`","rejected":"x"}\n`)]);
    case 'notJson': return Buffer.from('{"prompt": "unterminated\n');
    case 'array': return json([prompt, chosen, rejected]);
    case 'number': return json({ prompt: 3, chosen: 4, rejected: 5, completion: 6 });
    case 'longPrompt': return json(forSft ? { prompt: 'x'.repeat(100), completion: chosen } : { prompt: 'x'.repeat(100), chosen, rejected });
    case 'longLine': return json({ ...record, padding: 'p'.repeat(3000) });
    case 'blank': return Buffer.from('   \n');
    case 'crlf': return Buffer.from(`${JSON.stringify(record)}\r\n`);
    case 'bom': return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), json(record)]);
    case 'deep': return Buffer.from(`${'['.repeat(3000)}${']'.repeat(3000)}\n`);
    case 'badRole': return json(forSft ? { messages: [{ role: 'robot', content: 'x' }] } : { prompt: [{ role: 'robot', content: 'x' }], chosen: [{ role: 'assistant', content: '1' }], rejected: [{ role: 'assistant', content: '2' }] });
    case 'nul': return Buffer.from(`{"prompt":"${prompt}\\u0000","chosen":"${chosen}","rejected":"${rejected}","completion":"x"}\n`);
  }
}

const recordKind: fc.Arbitrary<RecordKind> = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom<RecordKind>('good', 'good', 'goodConversation', 'crlf', 'emptyPrompt') },
  { weight: 3, arbitrary: fc.constantFrom<RecordKind>('emptyChosen', 'equal', 'duplicateKey', 'invalidUtf8', 'notJson', 'array', 'number', 'longPrompt',
    'longLine', 'blank', 'bom', 'deep', 'badRole', 'nul') },
);

/** A data file: mostly good lines, some hostile (and sometimes none). */
const records = fc.array(recordKind, { minLength: 0, maxLength: 24 });

/** Flags with their valid values, then their hostile ones: a program takes a valid value four times in five. */
const FLAG_VALUES: Record<string, [string[], string[]]> = {
  '--loss': [['dpo', 'minordpo', 'ipo', 'simpo', 'orpo', 'dpop'], ['exo', 'minodpo', '']],
  '--beta': [['0.5', '0.1'], ['0', '-1', 'x', '1e308', 'NaN', 'Infinity']],
  '--steps': [['1', '2', '3', '40', '200'], ['0', '-1', 'two', '1.5']],
  '--batch': [['1', '2', '4'], ['0', '1000000', '-3']],
  '--lr': [['1e-3', '1e-4'], ['0', '-1', 'nan', 'Infinity', '1e-300']],
  '--warmup': [['0', '1'], ['50', '-2']],
  '--max-length': [['5', '8', '13'], ['2', '1000', '1']],
  '--grad-accum': [['1', '2'], ['0']],
  '--seed': [['0', '7'], ['-1', '99999999999']],
  '--eval-every': [['1', '0'], ['-1']],
  '--save-every': [['1', '0'], ['x']],
  '--stop-after': [['1', '2'], ['0']],
  '--max-line-bytes': [['100000', '1000'], ['64', '0']],
  '--samples': [['0', '1'], ['-1']],
  '--label-smoothing': [['0.1'], ['0.7']],
  '--checkpoint-minutes': [['0', '1e-9'], ['-1']],
};
const BARE_FLAGS = ['--skip-bad-lines', '--skip-bad-lines', '--precompute-ref', '--overwrite', '--overwrite', '--average-log-prob', '--bogus', '--help'];

/** Flags a training command does not take when it is sft. */
const PREFERENCE_ONLY = new Set(['--loss', '--beta', '--label-smoothing', '--precompute-ref', '--average-log-prob']);

function trainingFlags(command: 'train' | 'sft'): fc.Arbitrary<string[]> {
  const named = Object.keys(FLAG_VALUES).filter((f) => command === 'train' || !PREFERENCE_ONLY.has(f));
  const bare = BARE_FLAGS.filter((f) => command === 'train' || !PREFERENCE_ONLY.has(f));
  return fc.array(fc.oneof(
    {
      weight: 6,
      arbitrary: fc.constantFrom(...named).chain((flag) => fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...FLAG_VALUES[flag][0]) },
        { weight: 1, arbitrary: fc.constantFrom(...FLAG_VALUES[flag][1]) },
      ).map((value) => [flag, value])),
    },
    { weight: 2, arbitrary: fc.constantFrom(...bare).map((flag) => [flag]) },
    { weight: 1, arbitrary: fc.constantFrom(['--resume', 'run'], ['--resume', 'run'], ['--resume', 'nowhere'], ['--eval'], ['--model', 'data.jsonl'], ['--model', 'nowhere'], ['--model', 'broken'], ['stray']) },
  ), { maxLength: 4 }).map((groups) => groups.flat());
}

/** The other commands' flags, valid and hostile. */
const OTHER_FLAGS: Record<'eval' | 'generate' | 'report', string[][]> = {
  eval: [['--beta', '0.5'], ['--beta', '-1'], ['--batch', '2'], ['--batch', '0'], ['--show', '1'], ['--json'], ['--overwrite'], ['--ref', 'model'], ['--ref', 'broken'],
    ['--ref', 'run/checkpoint'], ['--ref', 'nowhere'], ['--max-new-tokens', '2']],
  generate: [['--max-new-tokens', '3'], ['--max-new-tokens', '0'], ['--temperature', '0.7'], ['--temperature', '-1'], ['--top-k', '2'], ['--top-p', '0.9'],
    ['--top-p', '2'], ['--seed', '3'], ['--json'], ['--prompt', ''], ['--chat']],
  report: [['--labels', 'a'], ['--labels', 'a,b'], ['--overwrite'], ['--out', 'data.jsonl'], ['--out', 'model'], ['nowhere'], ['model']],
};

function flagsOf(command: CliProgram['command']): fc.Arbitrary<string[]> {
  if (command === 'train' || command === 'sft') return trainingFlags(command);
  return fc.array(fc.constantFrom(...OTHER_FLAGS[command]), { maxLength: 3 }).map((groups) => groups.flat());
}

const signal = fc.option(fc.record({
  name: fc.constantFrom<'SIGINT' | 'SIGTERM'>('SIGINT', 'SIGTERM'),
  when: fc.constantFrom<'start' | 'training'>('start', 'training', 'training', 'training'),
  delayMs: fc.integer({ min: 0, max: 400 }),
  twice: fc.constantFrom(false, false, false, true),
}), { freq: 4 });

/** `count` programs of `seed`. */
export function sampleCliPrograms(seed: number, count: number): CliProgram[] {
  const program = fc.constantFrom<CliProgram['command']>('train', 'train', 'train', 'train', 'sft', 'sft', 'eval', 'generate', 'report').chain((command) => fc.record({
    command: fc.constant(command),
    records,
    evalRecords: fc.option(records, { freq: 3 }),
    out: fc.constantFrom<OutKind>('none', 'new', 'new', 'new', 'emptyFolder', 'userFiles', 'model', 'insideModel', 'dataFile', 'holdsData', 'file', 'finishedRun', 'stoppedRun'),
    flags: flagsOf(command),
    signal,
  }));
  // two training programs in three are quiet; the others print their progress, which is judged too
  const quiet = (p: Omit<CliProgram, 'id'>, id: number) => (p.command === 'train' || p.command === 'sft') && id % 3 !== 0;
  return fc.sample(program, { seed, numRuns: count }).map((p, id) => ({ id, ...p, flags: quiet(p, id) ? [...p.flags, '--quiet'] : p.flags }));
}

// ---- The sandbox ----------------------------------------------------------------------------------

/** A finished run's folder and a stopped one, made once and copied into each sandbox that wants one. */
interface Templates {
  model: string;
  finished: string;
  stopped: string;
}

function makeTemplates(base: string): Templates {
  // a context that holds a rendered conversation (about 35 bytes), and not a 100-byte prompt
  const model = modelFolder(path.join(base, 'model'), { ...TINY, context: 48 }, 1);
  const data = path.join(base, 'data.jsonl');
  fs.writeFileSync(data, Buffer.concat(Array.from({ length: 12 }, (_, k) => lineOf('good', k, false))));
  const run = (out: string, extra: string[]) => {
    const result = require('node:child_process').spawnSync(process.execPath, [CLI, 'train', '--model', model, '--data', data, '--out', out,
      '--steps', '3', '--batch', '2', '--samples', '0', '--quiet', ...extra], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`the fuzz templates could not be made: ${result.stderr}`);
  };
  run(path.join(base, 'finished'), []);
  run(path.join(base, 'stopped'), ['--stop-after', '1']);
  return { model, finished: path.join(base, 'finished'), stopped: path.join(base, 'stopped') };
}

function copyFolder(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true });
}

/**
 * The sandbox of one program, its argument list, and what the run may write: for sft and train
 * the run files in its folders (--out, a --resume folder), for eval and report their --out file.
 */
function prepare(program: CliProgram, sandbox: string, templates: Templates): { args: string[]; runFolders: string[]; outputFile: string | null } {
  copyFolder(templates.model, path.join(sandbox, 'model'));
  const forSft = program.command === 'sft';
  fs.writeFileSync(path.join(sandbox, 'data.jsonl'), Buffer.concat(program.records.map((kind, k) => lineOf(kind, k, forSft))));
  if (program.evalRecords) fs.writeFileSync(path.join(sandbox, 'eval.jsonl'), Buffer.concat(program.evalRecords.map((kind, k) => lineOf(kind, k + 100, forSft))));
  fs.mkdirSync(path.join(sandbox, 'broken'));
  fs.writeFileSync(path.join(sandbox, 'broken', 'config.json'), '{"format": "fusedpo-model", "version": 1, "model": {"layers": 1e9}}');
  fs.mkdirSync(path.join(sandbox, 'mine'));
  fs.writeFileSync(path.join(sandbox, 'mine', 'notes.txt'), 'my notes');
  fs.writeFileSync(path.join(sandbox, 'mine', 'metrics.jsonl'), '{"mine": true}\n');
  copyFolder(templates.stopped, path.join(sandbox, 'run'));
  let out: string | null;
  switch (program.out) {
    case 'none': out = null; break;
    case 'new': out = 'out'; break;
    case 'emptyFolder': fs.mkdirSync(path.join(sandbox, 'empty')); out = 'empty'; break;
    case 'userFiles': out = 'mine'; break;
    case 'model': out = 'model'; break;
    case 'insideModel': out = 'model/tuned'; break;
    case 'dataFile': out = 'data.jsonl'; break;
    case 'holdsData': out = '.'; break;
    case 'file': fs.writeFileSync(path.join(sandbox, 'a-file'), 'text'); out = 'a-file'; break;
    case 'finishedRun': copyFolder(templates.finished, path.join(sandbox, 'finished')); out = 'finished'; break;
    case 'stoppedRun': out = 'run'; break;
  }
  const base: string[] = [];
  const given = new Set(program.flags.filter((f) => f.startsWith('--')));
  if (program.command === 'train' || program.command === 'sft') {
    if (!given.has('--model') && (program.command === 'train' || program.id % 2 === 0)) base.push('--model', 'model');
    if (program.command === 'sft' && !given.has('--model') && program.id % 2 === 1) base.push('--context', '48', '--width', '16', '--layers', '1');
    base.push('--data', 'data.jsonl');
    if (program.evalRecords) base.push('--eval', 'eval.jsonl');
    // a program to be signalled in training runs long enough for the signal to land there
    if (!given.has('--steps')) base.push('--steps', program.signal?.when === 'training' ? '600' : '2');
    if (!given.has('--batch')) base.push('--batch', '2');
    if (out !== null) base.push('--out', out);
    if (program.flags.includes('--precompute-ref')) base.push('--ref-cache', 'cache');
    const resumed = program.flags.indexOf('--resume');
    const runFolders = [out, resumed >= 0 ? program.flags[resumed + 1] : null].filter((f): f is string => typeof f === 'string' && !f.startsWith('--'));
    return { args: [program.command, ...base, ...program.flags], runFolders, outputFile: null };
  }
  if (program.command === 'eval') {
    const args = ['eval', '--model', 'model', '--data', 'data.jsonl', '--no-generate', ...(out ? ['--out', out] : []), ...program.flags];
    return { args, runFolders: [], outputFile: lastOut(args) };
  }
  if (program.command === 'generate') {
    return { args: ['generate', '--model', program.out === 'finishedRun' ? 'finished' : 'model', '--prompt', '1+1=', ...program.flags], runFolders: [], outputFile: null };
  }
  // a report's default output is report.html in its one run folder
  const folders = ['run', ...program.flags.filter((f) => f === 'nowhere' || f === 'model')];
  const args = ['report', ...folders, ...(out ? ['--out', out] : []), ...program.flags.filter((f) => f !== 'nowhere' && f !== 'model')];
  return { args, runFolders: [], outputFile: lastOut(args) ?? (folders.length === 1 ? path.join('run', 'report.html') : 'report.html') };
}

/** Whether `file` is a temporary file of `output` (`.<name>.<pid>[.<time>].partial` beside it). */
function isPartialOf(file: string, output: string | null): boolean {
  if (output === null || path.dirname(path.normalize(file)) !== path.dirname(path.normalize(output))) return false;
  const name = path.basename(file);
  return name.startsWith(`.${path.basename(output)}.`) && name.endsWith('.partial');
}

/** The value of the last --out of an argument list (the one that counts), or null. */
function lastOut(args: readonly string[]): string | null {
  const at = args.lastIndexOf('--out');
  return at >= 0 && at + 1 < args.length ? args[at + 1] : null;
}

/** Whether `file` (relative to the sandbox) is the run's to write: in a run folder, the cache, a new default runs/ folder, the output file. */
function writtenByRun(file: string, runFolders: readonly string[], outputFile: string | null): boolean {
  if (file.startsWith(`cache${path.sep}`) || file.startsWith(`runs${path.sep}`)) return true;
  if (outputFile !== null && path.normalize(file) === path.normalize(outputFile)) return true;
  return runFolders.some((folder) => {
    const inFolder = folder === '.' ? file : path.relative(folder, file);
    if (inFolder.startsWith('..') || path.isAbsolute(inFolder)) return false;
    const top = inFolder.split(path.sep)[0];
    return isRunEntry(top) || top === '.fusedpo.lock' || /^\..+\.[0-9]+\.partial$/.test(top);
  });
}

// ---- Running and judging --------------------------------------------------------------------------

interface Ended {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** The metrics.jsonl of a run folder or of a new folder under runs/, once one exists. */
function metricsAppeared(sandbox: string, runFolders: readonly string[]): boolean {
  const runs = path.join(sandbox, 'runs');
  const defaults = fs.existsSync(runs) ? fs.readdirSync(runs).map((name) => path.join('runs', name)) : [];
  return [...runFolders, ...defaults].some((folder) => fs.existsSync(path.join(sandbox, folder, 'metrics.jsonl')));
}

function runIn(sandbox: string, args: string[], program: CliProgram, timeoutMs: number, runFolders: readonly string[], before: Map<string, string>): Promise<Ended> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: sandbox, env: { ...process.env, FUSEDPO_THREADS: '1', FUSEDPO_CACHE: path.join(sandbox, 'cache') } });
    let stdout = '', stderr = '', timedOut = false;
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timers: NodeJS.Timeout[] = [];
    timers.push(setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs));
    const send = () => {
      const { name, when, delayMs, twice } = program.signal!;
      // in training a step takes milliseconds: a short wait lands within the run
      const wait = when === 'training' ? delayMs % 25 : delayMs;
      timers.push(setTimeout(() => child.kill(name), wait));
      if (twice) timers.push(setTimeout(() => child.kill(name), wait + 30));
    };
    if (program.signal?.when === 'start') send();
    if (program.signal?.when === 'training') {
      // a run folder of a stopped run already holds metrics: wait for the file to grow instead
      const poll = setInterval(() => {
        if (metricsAppeared(sandbox, runFolders.filter((f) => !before.has(path.join(f, 'metrics.jsonl'))))) {
          clearInterval(poll);
          send();
        }
      }, 5);
      timers.push(poll);
    }
    child.on('close', (status, signalName) => {
      for (const timer of timers) clearTimeout(timer as NodeJS.Timeout);
      resolve({ status, signal: signalName, stdout, stderr, timedOut });
    });
  });
}

function judgeRun(program: CliProgram, ended: Ended, damage: string[], sandbox: string, runFolders: readonly string[], args: string[]): CliJudged {
  const detail = (what: string) => `${what}\n$ fusedpo ${args.join(' ')}\n${ended.stderr.slice(-1200)}`;
  if (ended.timedOut) return { program, verdict: 'hang', detail: detail('no end within the limit') };
  if (/^\s+at .+[(:]|node:internal/m.test(ended.stderr) || /internal error/.test(ended.stderr)) return { program, verdict: 'unclearError', detail: detail('a stack trace or an internal error') };
  if (damage.length > 0) return { program, verdict: 'damage', detail: detail(`files outside the run's: ${damage.slice(0, 5).join(', ')}`) };
  const bySignal = ended.signal === 'SIGINT' || ended.signal === 'SIGTERM';
  if (program.signal && (bySignal || ended.status === 130 || ended.status === 143)) {
    // a run stopped at a step boundary says how to go on, and its checkpoint is there
    if (!bySignal && !/before the first step; nothing was written$/m.test(ended.stderr)) {
      const resume = /continue with: fusedpo (train|sft) --resume (.+)$/m.exec(ended.stderr);
      if (!resume) return { program, verdict: 'wrong', detail: detail('interrupted without the line to resume') };
      // and the line works: the run resumes to its end
      const resumed = spawnSync(process.execPath, [CLI, resume[1], '--resume', resume[2], '--quiet'], { cwd: sandbox, encoding: 'utf8', env: { ...process.env, FUSEDPO_THREADS: '1' } });
      if (resumed.status !== 0) return { program, verdict: 'wrong', detail: detail(`the resume line failed (status ${resumed.status}): ${resumed.stderr.slice(-600)}`) };
    }
    return { program, verdict: 'interrupted', detail: bySignal ? 'killed by the signal' : 'stopped at a step and resumed' };
  }
  if (ended.status === 1 || ended.status === 2) {
    const last = ended.stderr.trim().split('\n').at(-1) ?? '';
    if (!/^fusedpo [a-z]+: \S/.test(last)) return { program, verdict: 'unclearError', detail: detail('a refusal whose last line does not name the command') };
    return { program, verdict: 'clearError', detail: last };
  }
  if (ended.status !== 0) return { program, verdict: 'crash', detail: detail(`status ${ended.status}, signal ${ended.signal}`) };
  if ((program.command === 'train' || program.command === 'sft') && !args.includes('--help')) {
    let summary: { out?: string; steps?: number; finished?: boolean };
    try {
      summary = JSON.parse(ended.stdout);
    } catch {
      return { program, verdict: 'wrong', detail: detail('status 0 without a JSON summary') };
    }
    const folder = path.resolve(sandbox, summary.out ?? runFolders[0] ?? '.');
    const metrics = path.join(folder, 'metrics.jsonl');
    if (!fs.existsSync(metrics)) return { program, verdict: 'wrong', detail: detail('status 0 without metrics.jsonl') };
    const lines = fs.readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).filter((m) => !('eval_loss' in m));
    if (lines.at(-1)?.step !== summary.steps) return { program, verdict: 'wrong', detail: detail(`the last metrics line is step ${String(lines.at(-1)?.step)}, the summary says ${summary.steps}`) };
    if (summary.finished && !fs.existsSync(path.join(folder, 'model.safetensors'))) return { program, verdict: 'wrong', detail: detail('a finished run without its model') };
  }
  return { program, verdict: 'ok', detail: '' };
}

export interface CliRunOptions {
  timeoutMs?: number;
  /** Programs run at once (each is a process; default 2). */
  parallel?: number;
  onResult?(judged: CliJudged, done: number): void;
}

/** Runs the programs, each in a sandbox of its own (removed after), `parallel` at a time. */
export async function runCliPrograms(programs: CliProgram[], options: CliRunOptions = {}): Promise<CliJudged[]> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-fuzz-cli-'));
  const templates = makeTemplates(path.join(base, 'templates'));
  const results: CliJudged[] = new Array(programs.length);
  let next = 0, done = 0;
  const worker = async () => {
    while (next < programs.length) {
      const program = programs[next++];
      const sandbox = path.join(base, `program-${program.id}`);
      fs.mkdirSync(sandbox);
      const { args, runFolders, outputFile } = prepare(program, sandbox, templates);
      const before = snapshot(sandbox);
      const ended = await runIn(sandbox, args, program, options.timeoutMs ?? 60_000, runFolders, before);
      // a process killed while it writes leaves the output's temporary file (the next write removes it)
      const killed = ended.signal !== null;
      const damage = changes(before, snapshot(sandbox), (file) => writtenByRun(file, runFolders, outputFile) || (killed && isPartialOf(file, outputFile)));
      const judged = judgeRun(program, ended, damage, sandbox, runFolders, args);
      results[programs.indexOf(program)] = judged;
      fs.rmSync(sandbox, { recursive: true, force: true });
      options.onResult?.(judged, ++done);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.parallel ?? 2 }, worker));
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
  return results;
}

/** Counts by verdict. */
export function tallyCli(judged: CliJudged[]): Record<CliVerdict, number> {
  const counts = Object.fromEntries(['ok', 'clearError', 'interrupted', 'unclearError', 'crash', 'hang', 'damage', 'wrong'].map((v) => [v, 0])) as Record<CliVerdict, number>;
  for (const j of judged) counts[j.verdict]++;
  return counts;
}
