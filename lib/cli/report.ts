/**
 * `fusedpo report DIR... [--out FILE] [--labels A,B,...]`: the training report of one run folder
 * or of several overlaid (each run in its own colour on every chart), as one self-contained HTML
 * file (lib/report/html.ts).
 */
import * as path from 'node:path';

import { writeReport } from '../report/html';
import { UsageError, helpText, parseFlags, type Flag } from './options';

const FLAGS: Flag[] = [
  { name: 'out', kind: 'path', help: 'the HTML file to write (default: DIR/report.html for one run, report.html here for several)' },
  { name: 'labels', kind: 'string', help: 'comma-separated names of the runs, in order (default: the folders\' names)' },
  { name: 'overwrite', kind: 'boolean', help: 'let --out replace a file that is not a fusedpo report (an earlier report is replaced without it)' },
];

export function reportCommand(argv: readonly string[]): void {
  const usage = 'usage: fusedpo report DIR [DIR...] [--out FILE] [--labels A,B,...]';
  const { options, help, positional: directories } = parseFlags('report', argv, FLAGS, { positional: true });
  if (help) return void console.log(helpText(usage, FLAGS));
  const labels = (options.labels as string | undefined)?.split(',');
  if (directories.length === 0) throw new UsageError(`expected at least one run folder (a fusedpo sft/train --out)\n${usage}`);
  if (labels && labels.length !== directories.length) {
    throw new UsageError(`expected one label per run folder (${directories.length}) in --labels but received ${labels.length}`);
  }
  const file = (options.out as string | undefined) ?? (directories.length === 1 ? path.join(directories[0], 'report.html') : 'report.html');
  const runs = directories.map((directory, i) => (labels ? { directory, label: labels[i] } : directory));
  console.log(`fusedpo report: ${directories.length} run${directories.length > 1 ? 's' : ''} -> ${writeReport(runs, file, { overwrite: options.overwrite === true })}`);
}
