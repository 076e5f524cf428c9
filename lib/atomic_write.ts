/**
 * The one way files are written whole (model folders, run files, reports): the text goes to a
 * temporary file beside the target (`.<name>.<pid>.partial`, a name run folders know to clean),
 * is flushed, then renamed over the target. Its own module because lib/nn, lib/train and
 * lib/report all write this way, and lib/train reads lib/nn.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Writes text through a temporary file in the same folder, flushed, then renamed over `file`: a
 * reader sees the old file or the new one, never half; a failed write (a full disk) removes its
 * temporary file and leaves the old one as it was.
 */
export function writeFileAtomic(file: string, text: string | Uint8Array): void {
  removeStalePartials(file);
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.partial`);
  try {
    const fd = fs.openSync(temporary, 'w');
    try {
      fs.writeSync(fd, typeof text === 'string' ? Buffer.from(text) : text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temporary, file);
  } catch (error) {
    fs.rmSync(temporary, { force: true });
    throw error;
  }
}

/** Whether process `pid` runs (as this user's or another's: EPERM says it exists). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files of `file` that a killed process left (`.<name>.<pid>[.<time>].partial`
 * of a PID that no longer runs): a write interrupted by a kill leaves one, and the next write of
 * the same file takes it away. Those of a live process (a write going on) are left alone.
 */
export function removeStalePartials(file: string): void {
  const prefix = `.${path.basename(file)}.`;
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(file));
  } catch {
    return;  // no folder yet: nothing left behind in it
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.partial')) continue;
    const pid = Number(name.slice(prefix.length).split('.')[0]);
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid)) fs.rmSync(path.join(path.dirname(file), name), { force: true });
  }
}
