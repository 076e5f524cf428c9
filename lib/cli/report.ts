/**
 * `fusedpo report DIR... [--out FILE] [--labels A,B,...]`: the training report of one run folder
 * or of several overlaid (each run in its own colour on every chart), as one self-contained HTML
 * file (lib/report/html.ts).
 */
import * as path from 'node:path';

import { writeReport } from '../report/html';
import { UsageError, helpText, type Flag } from './options';

const FLAGS: Flag[] = [
  { name: 'out', kind: 'path', help: 'the HTML file to write (default: DIR/report.html for one run, report.html here for several)' },
  { name: 'labels', kind: 'string', help: 'comma-separated names of the runs, in order (default: the folders\' names)' },
];

export function reportCommand(argv: readonly string[]): void {
  const usage = 'usage: fusedpo report DIR [DIR...] [--out FILE] [--labels A,B,...]';
  const directories: string[] = [];
  let out: string | undefined, labels: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return void console.log(helpText(usage, FLAGS));
    if (arg === '--out' || arg === '--labels') {
      const value = argv[++i];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`expected a value after ${arg}`);
      if (arg === '--out') out = value;
      else labels = value.split(',');
    } else if (arg.startsWith('--')) {
      throw new UsageError(`unknown option ${arg}; see fusedpo report --help`);
    } else {
      directories.push(arg);
    }
  }
  if (directories.length === 0) throw new UsageError(`expected at least one run folder (a fusedpo sft/train --out)\n${usage}`);
  if (labels && labels.length !== directories.length) {
    throw new UsageError(`expected one label per run folder (${directories.length}) in --labels but received ${labels.length}`);
  }
  const file = out ?? (directories.length === 1 ? path.join(directories[0], 'report.html') : 'report.html');
  const runs = directories.map((directory, i) => (labels ? { directory, label: labels[i] } : directory));
  console.log(`fusedpo report: ${directories.length} run${directories.length > 1 ? 's' : ''} -> ${writeReport(runs, file)}`);
}
