/**
 * Measuring memory in tests: a full garbage collection on demand (so that a resident-set sample
 * is not a V8 heap that has simply not been collected yet), and the resident set in MiB.
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

let gc: (() => void) | null = null;

/** Runs a full, synchronous garbage collection (without --expose-gc on the command line). */
export function collectGarbage(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}

/** The resident set after a full collection, in MiB. */
export function residentMiB(): number {
  collectGarbage();
  return process.memoryUsage().rss / 2 ** 20;
}

/**
 * Whether the addon under test is the sanitized build (test/sanitizers/run.sh): its storages are
 * not pooled and AddressSanitizer keeps freed memory in quarantine, so resident-memory bounds and
 * the pool's reuse are not what that run measures (memory errors are).
 */
export const SANITIZED = !!process.env.FUSEDPO_SANITIZER;

/**
 * The live-tensor count once the finalizers of every collectable tensor have run (they run as
 * tasks): a baseline that tensors other tests dropped cannot move later.
 */
export async function settledLiveTensors(count: () => number): Promise<number> {
  let previous = -1;
  for (let k = 0; k < 10 && count() !== previous; k++) {
    previous = count();
    collectGarbage();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return count();
}
