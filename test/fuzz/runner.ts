/**
 * Runs fuzz programs in a child process (child.ts), one at a time, and judges each: a crash (the
 * child died), a hang (no answer within the timeout), an error that is not the package's own, a
 * wrong result, a leaked tensor. After a crash or a hang the child is replaced and the run goes
 * on, so that one run counts every failure.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';

import type { Outcome, Program } from './spec';

export type Verdict = 'returned' | 'correct' | 'clearError' | 'unclearError' | 'wrong' | 'crash' | 'hang' | 'leak' | 'skipped';

export interface Judged {
  program: Program;
  verdict: Verdict;
  detail: string;
  outcome?: Outcome;
}

export interface RunOptions {
  /** Milliseconds one program may take before it counts as a hang. */
  timeoutMs?: number;
  /** Environment of the child (FUSEDPO_FUZZ_PACKAGE: another build to fuzz; LD_PRELOAD: a sanitizer). */
  env?: NodeJS.ProcessEnv;
  /** Called after each program (progress). */
  onResult?: (judged: Judged, done: number) => void;
}

const CHILD = path.join(__dirname, 'child.ts');

class Child {
  readonly process: ChildProcessWithoutNullStreams;
  private buffer = '';
  private stderr = '';
  private waiting: ((line: string | null) => void) | null = null;
  private ended = false;

  constructor(env: NodeJS.ProcessEnv) {
    this.process = spawn(process.execPath, ['-r', 'tsx/cjs', CHILD], { cwd: path.join(__dirname, '..', '..'), env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.process.stdout.setEncoding('utf8');
    this.process.stderr.setEncoding('utf8');
    this.process.stdout.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.flush();
    });
    this.process.stderr.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.process.on('exit', () => {
      this.ended = true;
      this.waiting?.(null);
      this.waiting = null;
    });
  }

  private flush(): void {
    for (;;) {
      const start = this.buffer.indexOf('@@');
      const end = this.buffer.indexOf('\n', start);
      if (start < 0 || end < 0 || !this.waiting) return;
      const line = this.buffer.slice(start + 2, end);
      this.buffer = this.buffer.slice(end + 1);
      const resolve = this.waiting;
      this.waiting = null;
      resolve(line);
    }
  }

  /** The child's answer, null when it died first, 'timeout' past the limit. */
  ask(program: Program, timeoutMs: number): Promise<string | null | 'timeout'> {
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        resolve('timeout');
      }, timeoutMs);
      this.waiting = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
      this.process.stdin.write(JSON.stringify(program) + '\n');
      this.flush();
    });
  }

  get alive(): boolean {
    return !this.ended;
  }

  describeExit(): string {
    const { exitCode, signalCode } = this.process;
    return `the child ended (exit code ${exitCode}, signal ${signalCode}); its last output:\n${this.stderr.slice(-1500)}`;
  }

  kill(): void {
    this.process.kill('SIGKILL');
  }

  close(): void {
    this.process.stdin.end();
  }
}

function judge(program: Program, outcome: Outcome): Judged {
  if (outcome.result === 'build') return { program, verdict: 'skipped', detail: outcome.error?.message ?? '', outcome };
  if (outcome.wrong) return { program, verdict: 'wrong', detail: outcome.wrong, outcome };
  if (outcome.leakedTensors !== 0) return { program, verdict: 'leak', detail: `${outcome.leakedTensors} tensors left alive`, outcome };
  if (outcome.result === 'threw') {
    const e = outcome.error!;
    return { program, verdict: e.ours ? 'clearError' : 'unclearError', detail: `${e.name}: ${e.message}`, outcome };
  }
  return { program, verdict: program.reference ? 'correct' : 'returned', detail: '', outcome };
}

/** Runs every program; returns each one's verdict. */
export async function runPrograms(programs: Program[], options: RunOptions = {}): Promise<Judged[]> {
  const { timeoutMs = 20_000, env = process.env } = options;
  const judged: Judged[] = [];
  let child: Child | null = null;
  for (const program of programs) {
    if (!child || !child.alive) child = new Child(env);
    const answer = await child.ask(program, timeoutMs);
    let result: Judged;
    if (answer === 'timeout') {
      result = { program, verdict: 'hang', detail: `no answer in ${timeoutMs} ms` };
      child.kill();
      child = null;
    } else if (answer === null) {
      await new Promise((resolve) => setTimeout(resolve, 50));  // let the exit code and stderr arrive
      result = { program, verdict: 'crash', detail: child.describeExit() };
      child = null;
    } else {
      result = judge(program, JSON.parse(answer) as Outcome);
    }
    judged.push(result);
    options.onResult?.(result, judged.length);
  }
  child?.close();
  return judged;
}

export const FAILURES: readonly Verdict[] = ['unclearError', 'wrong', 'crash', 'hang', 'leak'];

/** Counts by verdict, and by family for the failures. */
export function tally(judged: Judged[]): Record<Verdict, number> {
  const counts = Object.fromEntries(['returned', 'correct', 'clearError', 'unclearError', 'wrong', 'crash', 'hang', 'leak', 'skipped'].map((v) => [v, 0])) as Record<Verdict, number>;
  for (const j of judged) counts[j.verdict]++;
  return counts;
}
