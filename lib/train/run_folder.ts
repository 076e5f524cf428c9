/**
 * A run's output folder, claimed before anything is written to it (docs/training.md, "The output
 * folder"). The rules, so that no run ever destroys what a user had:
 *
 * - a new run writes only into a folder that does not exist yet or is empty; a folder holding
 *   anything is refused, naming `overwrite` (`--overwrite`), which removes only the files a run
 *   writes (RUN_ENTRIES) and keeps every other file, or `resume` for a run folder with a checkpoint;
 * - the folder may not be, lie inside or hold any of the run's inputs (the starting model's
 *   folder, the data files, a tokenizer file): a run's own files could otherwise replace them;
 * - a lock file (`.fusedpo.lock`: the owner's PID, host and process start time) keeps a second
 *   run out while the first is alive; a lock whose process is gone is stale and taken over;
 * - partial files (`.<name>.<pid>.partial`, `.checkpoint.<pid>.partial`) are removed when a write
 *   fails, and those a killed run left behind are removed by the next run that holds the lock.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { processAlive } from '../atomic_write';
import { TrainingFileError } from './files';

export const LOCK_FILE = '.fusedpo.lock';

/** Everything a run writes in its folder: what `overwrite` replaces, and nothing else. */
export const RUN_ENTRIES: readonly string[] = [
  'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'run.json', 'metrics.jsonl', 'timings.jsonl', 'samples.jsonl', 'report.html',
  'checkpoint', '.checkpoint.old',
  // a Hugging Face folder's (lib/nn/pretrained.ts): the tokenizer's config and template, the generation config, a sharded model's index
  'tokenizer_config.json', 'chat_template.jinja', 'generation_config.json', 'model.safetensors.index.json',
];

/** The shards of a sharded model, as transformers names them (model-00001-of-00002.safetensors): written by a run too. */
export const RUN_SHARD = /^model-[0-9]{5}-of-[0-9]{5}\.safetensors$/;

/** Whether a run writes an entry of this name (RUN_ENTRIES, or a shard). */
export function isRunEntry(name: string): boolean {
  return RUN_ENTRIES.includes(name) || RUN_SHARD.test(name);
}

/** A temporary file or folder of a write in progress (files.ts names them so). */
export const PARTIAL_ENTRY = /^\..+\.[0-9]+\.partial$/;

/** An input the run reads: what its folder may not overlap. `name` is how the user gave it (a flag or an option). */
export interface RunInput {
  name: string;
  path: string;
}

export type ClaimMode = 'new' | 'overwrite' | 'resume';

/**
 * The absolute path with every symbolic link of its existing part resolved (the part that does
 * not exist yet appended as it is): two names of one folder compare equal.
 */
export function resolvedPath(target: string): string {
  const absolute = path.resolve(target);
  const rest: string[] = [];
  let existing = absolute;
  for (;;) {
    try {
      return path.join(fs.realpathSync(existing), ...rest.reverse());
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) return absolute;
      rest.push(path.basename(existing));
      existing = parent;
    }
  }
}

/** Whether `inner` is `outer` or lies inside it (both resolved). */
function within(inner: string, outer: string): boolean {
  const relative = path.relative(outer, inner);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/** Refuses a run folder that is, holds or lies inside one of the inputs. */
export function checkNoOverlap(directory: string, what: string, inputs: readonly RunInput[]): void {
  const out = resolvedPath(directory);
  for (const input of inputs) {
    const source = resolvedPath(input.path);
    if (out === source) throw new TrainingFileError(directory, `${what} may not be ${input.name} (${input.path}): the run would write over it; choose another folder`);
    if (within(source, out)) {
      throw new TrainingFileError(directory, `${what} may not hold ${input.name} (${input.path}): the run writes in this folder; choose another folder or move the input out of it`);
    }
    if (within(out, source)) throw new TrainingFileError(directory, `${what} may not lie inside ${input.name} (${input.path}); choose a folder outside it`);
  }
}

/** The entries of a folder, or null when there is no such folder (an error when it is something else). */
function entriesOf(directory: string, what: string): string[] | null {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new TrainingFileError(directory, `${what} cannot be used: ${(error as Error).message}`);
  }
  if (!stat.isDirectory()) throw new TrainingFileError(directory, `${what} exists and is not a folder`);
  return fs.readdirSync(directory);
}

/** A short list of names for a message: the first few, then how many more. */
function listed(names: readonly string[]): string {
  const shown = names.slice(0, 4).join(', ');
  return names.length > 4 ? `${shown} and ${names.length - 4} more` : shown;
}

// ---- The lock -----------------------------------------------------------------------------------

interface LockOwner {
  pid: number;
  host: string;
  /** The process's start time in clock ticks since boot (Linux), so that a reused PID is told apart. */
  started: string | null;
  since: string;
}

/** The start time of process `pid` (field 22 of /proc/<pid>/stat), or null where there is no /proc. */
function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) is in parentheses and may hold spaces: count fields after its end
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function readLock(file: string): LockOwner | null {
  try {
    const value = JSON.parse(fs.readFileSync(file, 'utf8')) as LockOwner;
    return typeof value === 'object' && value !== null && Number.isSafeInteger(value.pid) && typeof value.host === 'string' ? value : null;
  } catch {
    return null;
  }
}

/** Whether the lock's owner is gone: on this host, its PID is not running, or runs another process. */
function lockIsStale(owner: LockOwner): boolean {
  if (owner.host !== os.hostname()) return false;  // another machine's run (a shared disk): cannot tell
  if (!processAlive(owner.pid)) return true;
  const started = processStart(owner.pid);
  return owner.started !== null && started !== null && started !== owner.started;
}

const held = new Set<string>();
let exitHookInstalled = false;

/** The locks this process holds are removed when it exits, whatever way it exits (but a kill). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const file of held) releaseLockFile(file);
  });
}

function releaseLockFile(file: string): void {
  held.delete(file);
  if (readLock(file)?.pid === process.pid) fs.rmSync(file, { force: true });
}

/**
 * Takes `<directory>/.fusedpo.lock`: written whole to a temporary file, then linked to its name,
 * which fails if the name exists (so two runs cannot both take it, and no reader sees half).
 * `note` reports a stale lock taken over.
 */
function acquireLock(directory: string, note: (line: string) => void): string {
  const file = path.join(directory, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), started: processStart(process.pid), since: new Date().toISOString() };
  const temporary = path.join(directory, `.fusedpo.lock.${process.pid}.partial`);
  fs.writeFileSync(temporary, `${JSON.stringify(owner)}\n`);
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.linkSync(temporary, file);
        held.add(file);
        installExitHook();
        return file;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const other = readLock(file);
      if (!other) throw new TrainingFileError(file, `a lock file that cannot be read: if no fusedpo run is using ${directory}, delete it`);
      if (attempt > 0 || !lockIsStale(other)) {
        throw new TrainingFileError(directory, `in use by another fusedpo run (PID ${other.pid} on ${other.host}, since ${other.since}); ` +
          `wait for it to end, or if no such run is going on, delete ${file}`);
      }
      note(`${directory}: taking over the lock of PID ${other.pid} (no longer running)`);
      fs.rmSync(file, { force: true });
    }
    throw new TrainingFileError(file, 'the lock could not be taken');  // not reached: the second attempt returns or throws
  } finally {
    fs.rmSync(temporary, { force: true });
  }
}

// ---- Claiming -----------------------------------------------------------------------------------

export interface ClaimOptions {
  mode: ClaimMode;
  /** The inputs the folder may not overlap. */
  inputs: readonly RunInput[];
  /** How the folder is named to the user (`--out`, `out`). */
  what?: string;
  /** Where notes go (a stale lock taken over, earlier files replaced). */
  note?: (line: string) => void;
  /** What `overwrite` replaces (default: a training run's files, isRunEntry). */
  entries?: readonly string[];
  /** How the refusal names the way to overwrite (default `--overwrite`). */
  overwriteFlag?: string;
}

/** A claimed run folder: locked until `release()` (or the process's exit). */
export interface RunFolder {
  directory: string;
  /** Whether the claim made the folder. */
  created: boolean;
  release(): void;
}

/**
 * Checks and locks `directory` for a run (the rules at the top of this file). Nothing in the
 * folder is changed before the lock is held; with `overwrite`, the entries a run writes are
 * removed then, and only those.
 */
export function claimRunFolder(directory: string, options: ClaimOptions): RunFolder {
  const what = options.what ?? 'the run folder';
  const note = options.note ?? (() => {});
  checkNoOverlap(directory, what, options.inputs);
  const entries = entriesOf(directory, what);
  if (options.mode === 'resume' && entries === null) throw new TrainingFileError(directory, 'expected a run folder with a checkpoint to resume from, but there is no such folder');
  // a lock (checked below) and partial files (removed below) are not contents
  const contents = (entries ?? []).filter((name) => name !== LOCK_FILE && !PARTIAL_ENTRY.test(name));
  if (options.mode === 'new' && contents.length > 0) {
    const hasCheckpoint = contents.includes('checkpoint') || contents.includes('.checkpoint.old');
    throw new TrainingFileError(directory, `${what} already holds ${listed(contents)}: a run writes only into a new or empty folder. ` +
      `${hasCheckpoint ? 'Resume that run with --resume, or pass' : 'Pass'} ${options.overwriteFlag ?? '--overwrite'} to replace what an earlier run wrote there ` +
      '(other files are kept), or choose another folder');
  }
  const created = entries === null;
  fs.mkdirSync(directory, { recursive: true });
  const lock = acquireLock(directory, note);
  try {
    const now = fs.readdirSync(directory);
    const leftBehind = now.filter((n) => PARTIAL_ENTRY.test(n) && !n.startsWith(`${LOCK_FILE}.`));  // not another claim's lock in the making
    for (const name of leftBehind) fs.rmSync(path.join(directory, name), { recursive: true, force: true });
    if (options.mode === 'overwrite') {
      const replaced = now.filter((n) => (options.entries ? options.entries.includes(n) : isRunEntry(n)));
      if (replaced.length > 0) note(`${directory}: replacing ${listed(replaced)}, written by an earlier run (${options.overwriteFlag ?? '--overwrite'}; other files are kept)`);
      for (const name of replaced) fs.rmSync(path.join(directory, name), { recursive: true, force: true });
    }
  } catch (error) {
    releaseLockFile(lock);
    throw error;
  }
  return { directory, created, release: () => releaseLockFile(lock) };
}

/**
 * A folder name under `parent` that does not exist yet: `<parent>/<stem>-<YYYYMMDD-HHMMSS>`, with
 * `-2`, `-3`, ... added if needed. Where a command writes when no folder is given.
 */
export function freshFolderName(parent: string, stem: string, now = new Date()): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}${two(now.getMonth() + 1)}${two(now.getDate())}-${two(now.getHours())}${two(now.getMinutes())}${two(now.getSeconds())}`;
  const base = path.join(parent, `${stem}-${stamp}`);
  for (let k = 1; ; k++) {
    const candidate = k === 1 ? base : `${base}-${k}`;
    if (!fs.existsSync(candidate)) return candidate;
  }
}
