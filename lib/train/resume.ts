/**
 * What a checkpoint must match for a run to resume from it (docs/training.md, "Resume").
 *
 * A run records its identity in trainer_state.json: its kind, the settings its options resolved
 * to (defaults filled in, so that writing out a default is not a difference), the loss and its
 * parameters, the reference, the model's config, the tokenizer, and a fingerprint (size and
 * SHA-256) of each data source. A resumed run computes its own identity and every difference
 * is refused, named; only what may change between the pieces of one run is left out of it (the
 * number of steps, logging, evaluation and checkpoint cadence, progress output).
 *
 * Every field of trainer_state.json is checked before it is used: a step beyond the run, byte
 * counts longer than the files they cut (which would erase the metrics or grow a sparse file),
 * a cursor that is not the step's.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

import { TrainingFileError } from './files';
import { resolvedPath } from './run_folder';

/** A data source as it was when the run began: where, how many bytes, their SHA-256. */
export interface DataFingerprint {
  /** The file (resolved), or `records` for records passed in memory. */
  source: string;
  bytes: number;
  sha256: string;
}

/** The fingerprint of a data file (streamed, never held whole) or of records in memory (their JSON). */
export async function fingerprintData(source: string | readonly unknown[]): Promise<DataFingerprint> {
  const hash = createHash('sha256');
  if (typeof source !== 'string') {
    let bytes = 0;
    for (const record of source) {
      const text = `${JSON.stringify(record)}\n`;
      hash.update(text);
      bytes += Buffer.byteLength(text);
    }
    return { source: 'records', bytes, sha256: hash.digest('hex') };
  }
  // a pipe was read once, by the reader: read again it would wait for another writer. Its data
  // cannot be checked on resume, and are recorded as such
  if (!(await fs.promises.stat(source)).isFile()) return { source: resolvedPath(source), bytes: 0, sha256: 'not a regular file: not checked' };
  let bytes = 0;
  for await (const chunk of fs.createReadStream(source)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { source: resolvedPath(source), bytes, sha256: hash.digest('hex') };
}

/** A value for a message: JSON, shortened. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? 'undefined';
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * The differences between a saved identity and the current one, as `name now (the checkpoint's:
 * then)`, one per leaf; `names` gives a user's name for a path (`settings.batchSize` -> `batchSize`).
 */
export function identityDifferences(saved: unknown, current: unknown, names: (key: string) => string, prefix = ''): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(saved) && isObject(current) && !('sha256' in current)) {
    const keys = [...new Set([...Object.keys(current), ...Object.keys(saved)])];
    return keys.flatMap((key) => identityDifferences(saved[key], current[key], names, prefix ? `${prefix}.${key}` : key));
  }
  if (isObject(current) && 'sha256' in current) {
    // the same bytes are the same data, wherever they are now
    const then = isObject(saved) ? saved as Partial<DataFingerprint> : null;
    const now = current as unknown as DataFingerprint;
    if (then && then.bytes === now.bytes && then.sha256 === now.sha256) return [];
    const where = now.source === 'records' ? 'the records given' : now.source;
    if (!then) return [`${names(prefix)}: ${where} (the run had none)`];
    return [`${names(prefix)}: ${where} is not the data the run began with (${then.source}: ${then.bytes} bytes, SHA-256 ` +
      `${String(then.sha256).slice(0, 12)}...; now ${now.bytes} bytes, ${now.sha256.slice(0, 12)}...)`];
  }
  if (JSON.stringify(saved) === JSON.stringify(current)) return [];
  return [`${names(prefix)} ${shown(current)} (the checkpoint's: ${shown(saved)})`];
}

/** The fields of a checked trainer_state.json that the loop uses. */
export interface ResumePoint {
  step: number;
  cursor: number;
  numTokens: number;
  /** Each run file's length at the checkpoint: the lines after it are cut (written after the checkpoint). */
  fileBytes: { metrics: number; timings: number; samples: number };
}

function count(state: Record<string, unknown>, key: string, file: string, max = Number.MAX_SAFE_INTEGER): number {
  const value = state[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? 'a non-negative integer' : `an integer from 0 to ${max}`;
    throw new TrainingFileError(file, `${key}: expected ${range} but found ${shown(value)}; the checkpoint is damaged`);
  }
  return value;
}

/**
 * Every field of a trainer state, checked against the run resuming from it: `totalSteps` the
 * resumed run's length, `perStep` its examples per step, `sizes` the run files' current lengths.
 */
export function checkTrainerState(state: Record<string, unknown>, file: string,
  expect: { totalSteps: number; perStep: number; sizes: { metrics: number; timings: number; samples: number } }): ResumePoint {
  const savedTotal = count(state, 'totalSteps', file);
  const step = count(state, 'step', file, savedTotal);
  if (step > expect.totalSteps) {
    throw new TrainingFileError(file, `the checkpoint is at step ${step} but the run is asked for ${expect.totalSteps} steps; ask for at least ${step}`);
  }
  const cursor = count(state, 'cursor', file);
  if (cursor !== step * expect.perStep) {
    throw new TrainingFileError(file, `cursor: expected ${step * expect.perStep} (step ${step} of ${expect.perStep} examples) but found ${cursor}; the checkpoint is damaged`);
  }
  const numTokens = count(state, 'numTokens', file);
  const fileBytes = { metrics: 0, timings: 0, samples: 0 };
  for (const [name, key] of [['metrics', 'metricsBytes'], ['timings', 'timingsBytes'], ['samples', 'samplesBytes']] as const) {
    const bytes = count(state, key, file);
    const size = expect.sizes[name];
    if (bytes > size) {
      throw new TrainingFileError(file, `${key}: the checkpoint counts ${bytes} bytes of ${name}.jsonl but the file holds ${size}: ` +
        'the run folder was changed since the checkpoint; it cannot be resumed as it is');
    }
    fileBytes[name] = bytes;
  }
  return { step, cursor, numTokens, fileBytes };
}
