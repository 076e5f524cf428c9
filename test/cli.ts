/** The built command (dist/cli.js) run as a user runs it, in a child process. */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const CLI = path.resolve(__dirname, '..', 'dist', 'cli.js');

/** `fusedpo ...args` with FUSEDPO_THREADS set to `threads`; its status and output. */
export function fusedpoWith(threads: number) {
  return (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, FUSEDPO_THREADS: String(threads) } });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  };
}
