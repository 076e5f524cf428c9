/** Helpers of the dataset tests (test/data/dataset*.test.ts). */
import * as assert from 'uvu/assert';

import { DatasetError } from '../../lib/data/dataset';

/** The DatasetError that `promise` rejects with, after checking its file, line and message (`file:line: ` then `message`). */
export async function rejection(promise: Promise<unknown>, file: string, line: number | null, message: string | RegExp): Promise<DatasetError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, DatasetError);
    const failure = error as DatasetError;
    assert.is(failure.file, file);
    assert.is(failure.line, line);
    const head = line === null ? `${file}: ` : `${file}:${line}: `;
    assert.ok(failure.message.startsWith(head), `${failure.message} starts with ${head}`);
    if (typeof message === 'string') assert.is(failure.message, head + message);
    else assert.match(failure.message, message);
    return failure;
  }
  assert.unreachable(`expected a DatasetError: ${String(message)}`);
  throw new Error('unreachable');
}
