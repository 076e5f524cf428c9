/**
 * Helpers of the tests of run folders (test/train/folders, interrupt, resume): a small starting
 * model folder, the built command run synchronously or as a child to signal, and a listing of a
 * folder's files with their bytes' hashes, to show that nothing outside a run folder changed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { ByteTokenizer } from '../../lib/data/tokenizer';
import { GPT, type GPTConfig } from '../../lib/nn/gpt';
import { saveModelFolder } from '../../lib/train/files';
import { CLI } from '../cli';

export const root = path.resolve(__dirname, '..', '..');
export const examples = path.join(root, 'examples', 'data');
export const PREFERENCES = path.join(examples, 'preferences.jsonl');
export const EVAL = path.join(examples, 'preferences-eval.jsonl');
export const SFT = path.join(examples, 'sft.jsonl');
export const TINY: GPTConfig = { layers: 1, width: 16, heads: 2, context: 12, vocab: 257 };

export function temporaryDirectory(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `fusedpo-${prefix}-`));
}

/** A fusedpo model folder of a small random byte-level GPT. */
export function modelFolder(directory: string, config: GPTConfig = TINY, seed = 1): string {
  const model = new GPT(config, { seed });
  saveModelFolder(directory, model, new ByteTokenizer());
  model.dispose();
  return directory;
}

export interface Finished {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const ENV = { ...process.env, FUSEDPO_THREADS: '1' };

/** `fusedpo ...args` in `cwd`, waited for. */
export function fusedpo(cwd: string, ...args: string[]): Finished {
  const run = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: ENV, timeout: 120_000 });
  return { status: run.status, signal: run.signal, stdout: run.stdout, stderr: run.stderr };
}

/** `fusedpo ...args` as a child process to signal; `done` settles when it exits. */
export function fusedpoChild(cwd: string, ...args: string[]): { child: ChildProcess; stderr: () => string; done: Promise<Finished> } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env: ENV });
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<Finished>((resolve) => child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr })));
  return { child, stderr: () => stderr, done };
}

/** Resolves once `condition()` holds (polled), or rejects after `ms`. */
export async function until(condition: () => boolean, ms = 60_000, what = 'the condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Every file under `directory` (relative path -> SHA-256 of its bytes), symbolic links by target. */
export function snapshot(directory: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (folder: string) => {
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      const full = path.join(folder, entry.name);
      const relative = path.relative(directory, full);
      if (entry.isDirectory()) walk(full);
      else if (entry.isSymbolicLink()) files.set(relative, `-> ${fs.readlinkSync(full)}`);
      else files.set(relative, createHash('sha256').update(fs.readFileSync(full)).digest('hex'));
    }
  };
  walk(directory);
  return files;
}

/** The differences between two snapshots, as readable lines (none: nothing changed). */
export function changes(before: Map<string, string>, after: Map<string, string>, ignore: (file: string) => boolean = () => false): string[] {
  const out: string[] = [];
  for (const [file, hash] of before) if (!ignore(file) && after.get(file) !== hash) out.push(after.has(file) ? `changed ${file}` : `removed ${file}`);
  for (const file of after.keys()) if (!ignore(file) && !before.has(file)) out.push(`added ${file}`);
  return out;
}

/** Whether two files hold the same bytes. */
export function sameBytes(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

/** No stack trace in a command's output: no `    at ` frame and no `node:internal` line. */
export function noStackTrace(text: string): boolean {
  return !/^\s+at .+[(:]/m.test(text) && !text.includes('node:internal');
}
