/**
 * The code examples of README.md and docs/*.md run as written (with the package name pointed at
 * lib/), and each prints a finite number first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(__dirname, '..');
const documents = ['README.md', ...fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const blocks = documents.flatMap((document) => {
  const text = fs.readFileSync(path.join(root, document), 'utf8');
  return [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m, i) => ({ document, i, code: m[1] }));
});

test('the README has TypeScript examples', () => {
  assert.ok(blocks.some((b) => b.document === 'README.md'));
});

blocks.forEach(({ document, i, code }) => {
  test(`${document} example ${i + 1} runs and prints finite numbers`, async () => {
    const file = path.join(__dirname, `.example-${document.replace(/[^a-z]/gi, '-')}-${i}.ts`);
    fs.writeFileSync(file, code.replace(/from 'fusedpo'/g, "from '../lib/index'"));
    const printed: unknown[][] = [];
    const log = console.log;
    console.log = (...args: unknown[]) => printed.push(args);
    try {
      require(file);
      // an async example (a trainer's run) prints when it is done: wait for it, a minute at most
      for (let waited = 0; printed.length === 0 && waited < 60_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    } finally {
      console.log = log;
      fs.rmSync(file, { force: true });
    }
    assert.ok(printed.length > 0, 'the example printed nothing');
    const first = printed[0][0];
    assert.type(first, 'number');
    assert.ok(Number.isFinite(first as number), `printed ${String(first)}`);
  });
});

test.run();
