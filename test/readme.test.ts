/**
 * The README's code examples run as written (with the package name pointed at lib/).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

test('the README has TypeScript examples', () => {
  assert.ok(blocks.length >= 1);
});

blocks.forEach((code, i) => {
  test(`README example ${i + 1} runs and prints finite numbers`, () => {
    const file = path.join(__dirname, `.readme-example-${i}.ts`);
    fs.writeFileSync(file, code.replace(/from 'fusedpo'/g, "from '../lib/index'"));
    const printed: unknown[][] = [];
    const log = console.log;
    console.log = (...args: unknown[]) => printed.push(args);
    try {
      require(file);
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
