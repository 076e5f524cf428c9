/**
 * Interrupting a run without losing it: the first SIGINT (Ctrl-C) or SIGTERM asks the trainer to
 * stop at its next step boundary, after a checkpoint; a second one stops the process at once
 * (the last checkpoint stays whole: checkpoints are swapped in by renames).
 *
 * The trainer reads an `AbortSignal`-like `{ aborted }` at each step boundary (the API's
 * `signal` option), so that an API user stops a run with an AbortController; the CLI passes the
 * watcher below. It lives in native code (native/cpu/interrupts.h) because a step holds the main
 * thread for seconds at real sizes and a JavaScript listener would run only after it: the native
 * handler prints its line at once and makes the second signal immediate. Where the addon cannot
 * (not POSIX), JavaScript listeners do the same at the next return to the event loop.
 */
import { native } from '../native';

export interface InterruptWatch {
  /** True once a signal came: what the trainer reads at each step boundary. */
  readonly aborted: boolean;
  /** The signal's exit status for the shell: 128 + its number (130 for SIGINT, 143 for SIGTERM), or 0. */
  readonly exitCode: number;
  /** The signal's name, or null. */
  readonly signalName: string | null;
  /** Stops watching: the signals' previous behaviour is back. */
  dispose(): void;
}

const NAMES: Record<number, string> = { 2: 'SIGINT', 15: 'SIGTERM' };
const NUMBERS: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };

/**
 * Watches SIGINT and SIGTERM until `dispose()`; `message` is printed on stderr when the first one
 * comes (say what happens next and that a second signal stops at once).
 */
export function watchInterrupts(message: string): InterruptWatch {
  const addon = native();
  if (addon.watchInterrupts(message.endsWith('\n') ? message : `${message}\n`)) {
    let disposed = false;
    return {
      get aborted() { return addon.interruptSignal() !== 0; },
      get exitCode() { const s = addon.interruptSignal(); return s === 0 ? 0 : 128 + s; },
      get signalName() { return NAMES[addon.interruptSignal()] ?? null; },
      dispose() {
        if (!disposed) addon.unwatchInterrupts();
        disposed = true;
      },
    };
  }
  // Not POSIX: listeners, seen when the main thread returns to the event loop.
  let received: string | null = null;
  const listener = (signal: NodeJS.Signals) => {
    if (received !== null) process.exit(128 + NUMBERS[signal]);
    received = signal;
    process.stderr.write(message.endsWith('\n') ? message : `${message}\n`);
  };
  process.on('SIGINT', listener);
  process.on('SIGTERM', listener);
  return {
    get aborted() { return received !== null; },
    get exitCode() { return received === null ? 0 : 128 + NUMBERS[received]; },
    get signalName() { return received; },
    dispose() {
      process.off('SIGINT', listener);
      process.off('SIGTERM', listener);
    },
  };
}
