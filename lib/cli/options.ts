/**
 * Command-line options: each flag declared once (name, kind, help, the API option it fills), parsed
 * strictly (an unknown flag is an error with the nearest known one suggested), checked by kind,
 * and printed by `--help`. The loss parameters come from the registry, as kebab-case flags of
 * the same names the API takes (`--label-smoothing` is `labelSmoothing`).
 */
import { FusedpoError } from '../errors';
import { PARAMETERS, type NumberParameter, type ParameterName } from '../losses/registry';

export type FlagKind = 'integer' | 'number' | 'string' | 'path' | 'boolean';

export interface Flag {
  /** Without the leading `--`. */
  name: string;
  kind: FlagKind;
  help: string;
  /** The API option it sets (default: the flag in camelCase). */
  option?: string;
  /** For string flags: the accepted values. */
  choices?: readonly string[];
}

/** A command line that cannot be run as written (an unknown flag, a missing value): exit status 2. */
export class UsageError extends FusedpoError {
  override name = 'UsageError';
}

/** `label-smoothing` -> `labelSmoothing`. */
export function camelCase(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `labelSmoothing` -> `label-smoothing`. */
export function kebabCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** Edit distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The nearest of `known` to `word`, when near enough to be a typo. */
export function didYouMean(word: string, known: readonly string[]): string | null {
  let best: string | null = null, bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(word, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

/** Every loss parameter of the registry as a flag. */
export function lossParameterFlags(): Flag[] {
  return (Object.keys(PARAMETERS) as ParameterName[]).filter((name) => name !== 'groupSize').map((name) => {
    const p: NumberParameter = PARAMETERS[name];
    return { name: kebabCase(name), kind: p.integer ? 'integer' : 'number', option: name, help: `${p.doc} (default ${p.default}; docs/losses.md says which losses take it)` };
  });
}

/**
 * Parses `argv` against `flags`: option name -> value. Repeated flags: the last wins. Arguments
 * that are not options are an error, unless `positional` is set: then they are collected, in order.
 */
export function parseFlags(command: string, argv: readonly string[], flags: readonly Flag[], settings: { positional?: boolean } = {}):
  { options: Record<string, unknown>; help: boolean; positional: string[] } {
  const byName = new Map(flags.map((f) => [f.name, f]));
  const options: Record<string, unknown> = {};
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--') && settings.positional) {
      positional.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`fusedpo ${command}: unexpected argument '${arg}' (options start with --; see fusedpo ${command} --help)`);
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2);
    const flag = byName.get(name);
    if (!flag) {
      const near = didYouMean(name, [...byName.keys()]);
      throw new UsageError(`fusedpo ${command}: unknown option --${name}${near ? ` (did you mean --${near}?)` : ''}; see fusedpo ${command} --help`);
    }
    const key = flag.option ?? camelCase(flag.name);
    if (flag.kind === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') throw new UsageError(`fusedpo ${command}: expected --${name}, --${name}=true or --${name}=false but received '${arg}'`);
      options[key] = inline !== 'false';
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined || (inline === undefined && raw.startsWith('--'))) throw new UsageError(`fusedpo ${command}: expected a value after --${name}`);
    options[key] = convert(command, flag, raw);
  }
  return { options, help, positional };
}

function convert(command: string, flag: Flag, raw: string): unknown {
  const what = `fusedpo ${command}: expected ${{ integer: 'an integer', number: 'a number', string: 'a value', path: 'a path', boolean: 'a boolean' }[flag.kind]} after --${flag.name}`;
  if (flag.kind === 'integer') {
    if (!/^-?[0-9]+$/.test(raw)) throw new UsageError(`${what} but received '${raw}'`);
    return Number(raw);
  }
  if (flag.kind === 'number') {
    const value = raw === 'Infinity' ? Infinity : Number(raw);
    if (raw.trim() === '' || Number.isNaN(value)) throw new UsageError(`${what} but received '${raw}'`);
    return value;
  }
  if (flag.choices && !flag.choices.includes(raw)) {
    const near = didYouMean(raw, flag.choices);
    throw new UsageError(`fusedpo ${command}: expected one of ${flag.choices.join(', ')} after --${flag.name} but received '${raw}'${near ? ` (did you mean ${near}?)` : ''}`);
  }
  if (raw === '') throw new UsageError(`${what} but received an empty one`);
  return raw;
}

/** `--help` text: the usage line, then each flag with its help. */
export function helpText(usage: string, flags: readonly Flag[], notes = ''): string {
  const width = Math.max(...flags.map((f) => f.name.length + (f.kind === 'boolean' ? 0 : f.kind.length + 1))) + 4;
  const lines = flags.map((f) => {
    const head = `--${f.name}${f.kind === 'boolean' ? '' : ` ${f.kind === 'path' ? 'PATH' : f.kind === 'string' ? 'NAME' : f.kind === 'integer' ? 'N' : 'X'}`}`;
    return `  ${head.padEnd(width)}${f.help}`;
  });
  return `${usage}\n\noptions:\n${lines.join('\n')}${notes ? `\n\n${notes}` : ''}`;
}
