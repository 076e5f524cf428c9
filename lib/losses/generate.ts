/**
 * The files made from the registry of losses (registry.ts): the native header
 * native/core/loss_registry.h, and the loss and parameter tables of README.md and docs/losses.md
 * (between `<!-- registry:losses:begin -->` / `end` and `<!-- registry:parameters:begin -->` /
 * `end`). `npm run generate` writes them; `npm run generate -- --check` (and
 * test/registry.test.ts) fails when one differs from what the registry makes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { LOSSES, PARAMETERS, parameterFor, parametersOf, type LossEntry, type NumberParameter, type ParameterName } from './registry';

const ENTRIES: readonly LossEntry[] = LOSSES;
const NAMES = Object.keys(PARAMETERS) as ParameterName[];

function cppNumber(x: number): string {
  if (x === Infinity) return 'HUGE_VAL';
  if (x === -Infinity) return '-HUGE_VAL';
  const text = String(x);
  return /[.e]/.test(text) ? text : `${text}.0`;
}

/** The widest range any loss allows a parameter: what the native side checks (lib/ checks each loss's own). */
function widestRange(name: ParameterName): Required<Pick<NumberParameter, 'min' | 'max' | 'minExclusive' | 'maxExclusive'>> {
  const uses = ENTRIES.filter((entry) => entry.parameters[name] !== undefined).map((entry) => parameterFor(entry, name));
  let min = Infinity, max = -Infinity, minExclusive = true, maxExclusive = true;
  for (const use of uses) {
    const low = use.min ?? -Infinity, high = use.max ?? Infinity;
    if (low < min || (low === min && !use.minExclusive)) [min, minExclusive] = [low, use.minExclusive ?? false];
    if (high > max || (high === max && !use.maxExclusive)) [max, maxExclusive] = [high, use.maxExclusive ?? false];
  }
  return { min, max, minExclusive: min === -Infinity ? false : minExclusive, maxExclusive: max === Infinity ? false : maxExclusive };
}

/** native/core/loss_registry.h. */
export function lossRegistryHeader(): string {
  const kinds = ENTRIES.map((entry, i) => `  ${`${entry.kind} = ${i},`.padEnd(18)}// ${entry.name}`).join('\n');
  const parameters = NAMES.map((name) => {
    const p: NumberParameter = PARAMETERS[name];
    const r = widestRange(name);
    const type = p.integer ? 'int32_t' : 'double';
    return `  X(${type}, ${name}, ${cppNumber(p.default)}, ${cppNumber(r.min)}, ${r.minExclusive}, ${cppNumber(r.max)}, ${r.maxExclusive}, ${p.allowInfinity ?? false})`;
  }).join(' \\\n');
  const cases = (keep: (entry: LossEntry) => boolean) =>
    ENTRIES.filter(keep).map((entry) => `    case LossKind::${entry.kind}:`).join('\n');
  const predicate = (fn: string, doc: string, keep: (entry: LossEntry) => boolean) => `// ${doc}
FUSEDPO_HD inline bool ${fn}(LossKind kind) {
  switch (kind) {
${cases(keep)}
      return true;
    default:
      return false;
  }
}`;
  const names = ENTRIES.map((entry) => `    case LossKind::${entry.kind}:\n      return "${entry.name}";`).join('\n');
  return `// Generated from lib/losses/registry.ts by \`npm run generate\`: do not edit. The registry is the
// one list of losses and parameters (docs/losses.md is their contract); pair_loss.h holds each
// loss's formula under its LossKind.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace fusedpo {

// The value of NativeLossRequest.lossKind: the index of the loss in the registry's LOSSES.
enum class LossKind : int32_t {
${kinds}
};
constexpr int32_t kLossKindCount = ${ENTRIES.length};

// Every number parameter of the losses, as fields of LossParams:
//   X(type, name, default, min, minExclusive, max, maxExclusive, allowInfinity)
// with the widest range any loss allows it (lib/ checks each loss's own range first; the
// bindings check these, so that no value reaches a kernel that its formulas cannot take).
#define FUSEDPO_LOSS_PARAMETERS(X) \\
${parameters}

${predicate('lossNeedsReference', 'The loss compares the policy with a reference model (refLogps).', (e) => e.reference)}

${predicate('lossDividesByLength', "The loss's formula divides the log-ratios by the rows' token counts.", (e) => e.dividesByLength)}

${predicate('lossTakesRewards', 'The loss takes per-response rewards.', (e) => e.rewards === true)}

inline const char* lossName(LossKind kind) {
  switch (kind) {
${names}
  }
  return "unknown";
}

}  // namespace fusedpo
`;
}

function range(p: NumberParameter): string {
  const low = p.min === undefined ? '' : `${p.minExclusive ? '>' : '>='} ${p.min}`;
  const high = p.max === undefined ? '' : `${p.maxExclusive ? '<' : '<='} ${p.max}`;
  const both = [low, high].filter((s) => s !== '').join(', ');
  return (p.integer ? 'integer ' : '') + (both || 'any finite') + (p.allowInfinity ? ', or Infinity' : '');
}

/** The table of losses: name, formula, parameters (with the loss's own defaults), reference, source. */
export function lossTable(): string {
  const rows = ENTRIES.map((entry) => {
    const name = [entry.name, ...(entry.aliases ?? [])].map((n) => `\`${n}\``).join(' (alias ') + (entry.aliases?.length ? ')' : '');
    const parameters = parametersOf(entry).map((p) => `\`${p}\` ${parameterFor(entry, p).default}`).join(', ');
    const extras = [entry.reference ? '' : 'no reference', entry.rewards ? '`rewards`' : ''].filter((s) => s !== '').join(', ');
    return `| ${name} | \`${entry.formula.replace(/\|/g, '\\|')}\` | ${parameters}${extras ? `; ${extras}` : ''} | ${entry.source} |`;
  });
  return ['| loss | per pair (per prompt for `exo`) | parameters (default) | source |', '|---|---|---|---|', ...rows].join('\n');
}

/** The table of number parameters: default, range, the losses that take it. */
export function parameterTable(): string {
  const rows = NAMES.map((name) => {
    const p: NumberParameter = PARAMETERS[name];
    const takers = ENTRIES.filter((entry) => entry.parameters[name] !== undefined);
    const own = takers.filter((entry) => Object.keys(entry.parameters[name] ?? {}).length > 0)
      .map((entry) => `${entry.name}: ${parameterFor(entry, name).default}, ${range(parameterFor(entry, name))}`);
    const losses = takers.length === ENTRIES.length ? 'every loss' : takers.map((entry) => `\`${entry.name}\``).join(', ');
    return `| \`${name}\` | \`${p.symbol}\` | ${p.default} | ${range(p)}${own.length ? ` (${own.join('; ')})` : ''} | ${losses} | ${p.doc} |`;
  });
  return ['| parameter | symbol | default | range | taken by | meaning |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

const ROOT = path.resolve(__dirname, '..', '..');

/** Replaces what lies between a pair of markers. */
function withSection(text: string, section: string, body: string, file: string): string {
  const begin = `<!-- registry:${section}:begin -->`, end = `<!-- registry:${section}:end -->`;
  const from = text.indexOf(begin), to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`${file}: expected the markers ${begin} and ${end}`);
  return `${text.slice(0, from + begin.length)}\n${body}\n${text.slice(to)}`;
}

/** Every generated file: its path under the repository and the text the registry makes for it. */
export function generatedFiles(root = ROOT): { file: string; text: string }[] {
  const header = { file: 'native/core/loss_registry.h', text: lossRegistryHeader() };
  const docs = ['README.md', 'docs/losses.md'].map((file) => {
    let text = fs.readFileSync(path.join(root, file), 'utf8');
    text = withSection(text, 'losses', lossTable(), file);
    text = withSection(text, 'parameters', parameterTable(), file);
    return { file, text };
  });
  return [header, ...docs];
}

/** The generated files that differ from what the registry makes. */
export function staleFiles(root = ROOT): string[] {
  return generatedFiles(root).filter(({ file, text }) => {
    const full = path.join(root, file);
    return !fs.existsSync(full) || fs.readFileSync(full, 'utf8') !== text;
  }).map(({ file }) => file);
}

if (require.main === module) {
  if (process.argv.includes('--check')) {
    const stale = staleFiles();
    if (stale.length > 0) {
      console.error(`generated from lib/losses/registry.ts but out of date: ${stale.join(', ')} (run npm run generate)`);
      process.exit(1);
    }
    console.log('the generated files match lib/losses/registry.ts');
  } else {
    for (const { file, text } of generatedFiles()) {
      fs.writeFileSync(path.join(ROOT, file), text);
      console.log(`wrote ${file}`);
    }
  }
}
