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
