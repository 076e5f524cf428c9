/**
 * The error classes of fusedpo. Argument errors are plain `TypeError`/`RangeError`s whose
 * message names the argument, what was expected and what was received (see `validate.ts`);
 * the classes here carry data a caller may want to act on.
 */

/**
 * The base of the errors a user can cause with files, data or options (a dataset's bad line, a
 * model folder that does not match its config, a run folder in use): the CLI prints their
 * message as one line, with no stack trace. The message names the file (and line) or the option.
 */
export class FusedpoError extends Error {
  override name = 'FusedpoError';
}

/** The native addon could not be loaded, or a device was asked for that is not there. */
export class NativeLoadError extends Error {
  override name = 'NativeLoadError';
  /** Every binary path that was tried, in order. */
  readonly tried: string[];
  constructor(message: string, tried: string[] = []) {
    super(message);
    this.tried = tried;
  }
}

/** A NaN or infinite logit was found and the caller did not pass `allowNonFinite: true`. */
export class NonFiniteLogitError extends RangeError {
  override name = 'NonFiniteLogitError';
  constructor(
    readonly row: number,
    readonly token: number,
    readonly vocab: number,
    readonly value: number,
  ) {
    super(
      `Expected finite logits but received ${value} at row ${row}, token ${token}, vocabulary index ${vocab}` +
        ' (pass allowNonFinite: true to let the affected rows yield NaN and be reported)',
    );
  }
}

/**
 * A tokenizer file that cannot be used (read, parsed or understood), or a chat template that
 * failed: the message starts with the file (`tokenizer.json: ...`) and says what is wrong.
 */
export class TokenizerError extends FusedpoError {
  override name = 'TokenizerError';
  /** The file at fault, as the message names it; null where the error concerns no one file. */
  readonly file: string | null;
  constructor(message: string, options: { cause?: unknown; file?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.file = options.file ?? null;
  }
}
