/** Asserts that `fn` throws a `kind` whose message matches `pattern` (the tests of bad input). */
import * as assert from 'uvu/assert';

export function throwsLike(fn: () => unknown, kind: ErrorConstructor, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    assert.instance(error, kind, `expected a ${kind.name}, got ${(error as Error).name}: ${(error as Error).message}`);
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`no error (expected ${pattern})`);
}
