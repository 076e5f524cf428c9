/**
 * What a run prints on stderr: the data report first (records, kept, truncated, dropped: nothing
 * is cut silently), then per logged step a line, rewritten in place on a terminal (step, loss,
 * reward accuracy, chosen log-prob drift, tokens/s, ETA) or appended otherwise, then evaluations
 * and the end.
 */
import type { TruncationReport } from '../data/batch';

function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

const fixed = (x: number | undefined, digits = 4) => (x === undefined ? '-' : x.toFixed(digits));

export class Progress {
  private readonly enabled: boolean;
  private readonly terminal: boolean;
  private readonly begun = Date.now();
  private firstStep = 0;
  private open = false;

  constructor(setting: boolean | 'auto', private readonly totalSteps: number, hasOut: boolean) {
    this.terminal = process.stderr.isTTY === true;
    this.enabled = setting === 'auto' ? this.terminal || hasOut : setting;
  }

  private write(line: string, inPlace = false): void {
    if (!this.enabled) return;
    if (this.terminal && inPlace) {
      process.stderr.write(`\r\x1b[2K${line}`);
      this.open = true;
      return;
    }
    if (this.open) process.stderr.write('\n');
    this.open = false;
    process.stderr.write(`${line}\n`);
  }

  start(kind: string, report: TruncationReport, train: number, evalCount: number, fromStep: number,
    skipped: readonly { file: string; line: number; reason: string }[] = []): void {
    this.firstStep = fromStep;
    if (skipped.length > 0) {
      const first = skipped.slice(0, 3).map((bad) => `${bad.file}:${bad.line}: ${bad.reason}`).join('; ');
      this.write(`skipped ${skipped.length} bad record${skipped.length > 1 ? 's' : ''} (${first}${skipped.length > 3 ? '; ...' : ''})`);
    }
    const dropped = report.promptFilled > 0 ? `, ${report.promptFilled} dropped (prompt fills maxLength; lines ${report.droppedLines.join(', ')}${report.promptFilled > report.droppedLines.length ? ', ...' : ''})` : '';
    this.write(`fusedpo ${kind}: ${report.records} records, ${report.kept} kept, ${report.truncated} truncated to maxLength${dropped}; ${evalCount} eval examples`);
    this.write(fromStep > 0 ? `resuming at step ${fromStep} of ${this.totalSteps}` : `training ${this.totalSteps} steps over ${train} examples`);
  }

  step(metrics: Record<string, number>, tokensPerSecond: number): void {
    const step = metrics.step;
    const elapsed = (Date.now() - this.begun) / 1000;
    const eta = ((this.totalSteps - step) * elapsed) / Math.max(1, step - this.firstStep);
    const accuracy = metrics['rewards/accuracies'];
    const parts = [`step ${step}/${this.totalSteps}`, `loss ${fixed(metrics.loss)}`];
    if (accuracy !== undefined) parts.push(`acc ${fixed(accuracy, 2)}`, `margin ${fixed(metrics['rewards/margins'], 3)}`, `logps/chosen ${fixed(metrics['logps/chosen'], 2)}`);
    parts.push(`lr ${metrics.learning_rate.toExponential(2)}`, `${Math.round(tokensPerSecond)} tok/s`, `ETA ${clock(eta)}`);
    this.write(parts.join('  '), true);
  }

  eval(metrics: Record<string, number>): void {
    const accuracy = metrics['eval_rewards/accuracies'];
    this.write(`eval at step ${metrics.step}: loss ${fixed(metrics.eval_loss)}${accuracy === undefined ? '' : `  acc ${fixed(accuracy, 2)}  margin ${fixed(metrics['eval_rewards/margins'], 3)}`}`);
  }

  /** Plain lines (the end-of-training summary). */
  summary(text: string): void {
    if (text !== '') for (const line of text.split('\n')) this.write(line);
  }

  note(line: string): void {
    this.write(line);
  }

  end(message: string): void {
    this.write(`${message} (${clock((Date.now() - this.begun) / 1000)})`);
  }
}
