/**
 * Headless Chromium for the report's browser test (and the screenshot in docs/): found on PATH
 * (`chromium`, `chromium-browser`, `google-chrome`) or at FUSEDPO_CHROMIUM.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

export function findChromium(): string | null {
  if (process.env.FUSEDPO_CHROMIUM) return process.env.FUSEDPO_CHROMIUM;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      const candidate = path.join(dir, name);
      if (dir && fs.existsSync(candidate)) return candidate;
    }
  }
  return null;
}

/** Renders `htmlFile` in headless Chromium to the PNG `pngFile`, `width` x `height` CSS pixels. */
export function screenshot(chromium: string, htmlFile: string, pngFile: string, width = 1400, height = 2400): void {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-chromium-'));
  try {
    // Not under the sanitizer run's preloaded runtimes: Chromium is not the code under test.
    const env = { ...process.env };
    for (const key of ['LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS']) delete env[key];
    // --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start
    const run = spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--user-data-dir=${profile}`,
      `--window-size=${width},${height}`, `--screenshot=${pngFile}`, pathToFileURL(htmlFile).href], { encoding: 'utf8', timeout: 120_000, env });
    if (run.error) throw new Error(`could not run ${chromium}: ${run.error.message}`);
    if (!fs.existsSync(pngFile)) throw new Error(`${chromium} wrote no screenshot (status ${run.status}): ${run.stderr.slice(-2000)}`);
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}
