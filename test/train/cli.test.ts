/**
 * `fusedpo sft` and `fusedpo train` as a user runs them (the compiled dist/cli.js): data file in,
 * tuned model out; --stop-after then --resume gives the bytes of an unbroken run; --help; "did
 * you mean"; errors that name the file, line or option, with exit status 1 (bad input) or 2 (usage).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fusedpoWith } from '../cli';

const root = path.resolve(__dirname, '..', '..');
const data = path.join(root, 'examples', 'data');

const fusedpo = fusedpoWith(1);

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-cli-'));
const sftDir = path.join(base, 'sft');

test('fusedpo sft then fusedpo train: a data file in, a tuned model and its metrics out', () => {
  const sft = fusedpo('sft', '--data', path.join(data, 'sft.jsonl'), '--out', sftDir, '--context', '12', '--width', '32', '--steps', '20', '--batch', '8', '--seed', '1');
  assert.is(sft.status, 0, sft.stderr);
  for (const file of ['config.json', 'model.safetensors', 'metrics.jsonl', 'timings.jsonl', 'checkpoint/trainer_state.json']) {
    assert.ok(fs.existsSync(path.join(sftDir, file)), `sft wrote ${file}`);
  }
  assert.match(sft.stderr, /fusedpo sft: 60 records, 60 kept, 0 truncated/);
  const out = path.join(base, 'dpo');
  const train = fusedpo('train', '--model', sftDir, '--data', path.join(data, 'preferences.jsonl'), '--eval', path.join(data, 'preferences-eval.jsonl'),
    '--out', out, '--loss', 'minordpo', '--beta', '0.5', '--steps', '6', '--batch', '4', '--eval-every', '3');
  assert.is(train.status, 0, train.stderr);
  const summary = JSON.parse(train.stdout);
  assert.is(summary.finished, true);
  assert.is(summary.steps, 6);
  for (const key of ['loss', 'learning_rate', 'grad_norm', 'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen',
    'logps/rejected', 'rejectedBelowReference', 'num_tokens', 'epoch', 'step']) {
    assert.type(summary.last[key], 'number', key);
  }
  assert.type(summary.eval['eval_rewards/accuracies'], 'number');
  const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
  assert.is(lines.length, 6 + 2, 'six steps and two evaluations');
  assert.match(train.stderr, /eval at step 3/);
});

test('--stop-after then --resume: the same model and metrics bytes as an unbroken run', () => {
  const args = ['--model', sftDir, '--data', path.join(data, 'preferences.jsonl'), '--loss', 'dpo', '--steps', '5', '--batch', '4', '--save-every', '2', '--quiet'];
  assert.is(fusedpo('train', ...args, '--out', path.join(base, 'whole')).status, 0);
  const stopped = fusedpo('train', ...args, '--out', path.join(base, 'broken'), '--stop-after', '3');
  assert.is(stopped.status, 0, stopped.stderr);
  assert.is(JSON.parse(stopped.stdout).finished, false);
  const resumed = fusedpo('train', ...args, '--resume', path.join(base, 'broken'));
  assert.is(resumed.status, 0, resumed.stderr);
  for (const file of ['model.safetensors', 'metrics.jsonl']) {
    assert.ok(fs.readFileSync(path.join(base, 'broken', file)).equals(fs.readFileSync(path.join(base, 'whole', file))), `${file}: the same bytes`);
  }
  const other = fusedpo('train', ...args.filter((a) => a !== '--quiet'), '--resume', path.join(base, 'broken'), '--lr', '0.01');
  assert.is(other.status, 2);
  assert.match(other.stderr, /other options than the run's: --lr 0\.01 \(the run's: 0\.0005\)/);
});

test('--help for each command; "did you mean" for commands and options', () => {
  for (const command of ['sft', 'train']) {
    const help = fusedpo(command, '--help');
    assert.is(help.status, 0);
    assert.match(help.stdout, new RegExp(`usage: fusedpo ${command} `));
    assert.match(help.stdout, /--stop-after N/);
  }
  for (const command of ['eval', 'generate', 'report', 'reproduce', 'start']) {
    const help = fusedpo(command, '--help');
    assert.is(help.status, 0);
    assert.match(help.stdout, new RegExp(`usage: fusedpo ${command} `));
  }
  assert.match(fusedpo('report').stderr, /expected at least one run folder/);
  assert.match(fusedpo('report', sftDir, '--labels', 'a,b').stderr, /expected one label per run folder \(1\) in --labels but received 2/);
  assert.match(fusedpo('report', path.join(base, 'nowhere')).stderr, /no metrics\.jsonl/);
  assert.match(fusedpo('train', '--help').stdout, /--label-smoothing X/, 'the registry\'s parameters are flags');
  const command = fusedpo('trian');
  assert.is(command.status, 2);
  assert.match(command.stderr, /unknown command 'trian' \(did you mean 'train'\?\)/);
  const flag = fusedpo('train', '--model', sftDir, '--data', 'x', '--bta', '0.1');
  assert.is(flag.status, 2);
  assert.match(flag.stderr, /unknown option --bta \(did you mean --beta\?\)/);
  const loss = fusedpo('train', '--model', sftDir, '--data', 'x', '--loss', 'minodpo');
  assert.match(loss.stderr, /expected one of .* after --loss but received 'minodpo' \(did you mean minordpo\?\)/);
  assert.match(fusedpo('train', '--model', sftDir, '--data', 'x', '--steps', 'ten').stderr, /expected an integer after --steps but received 'ten'/);
});

test('bad input: the file, the line or the option, and exit status 1', () => {
  const bad = path.join(base, 'bad.jsonl');
  fs.writeFileSync(bad, '{"prompt":"a","chosen":"b","rejected":"c"}\nnot json\n');
  const run = fusedpo('train', '--model', sftDir, '--data', bad, '--quiet');
  assert.is(run.status, 1);
  assert.match(run.stderr, /bad\.jsonl:2: not valid JSON/);
  assert.match(fusedpo('train', '--model', path.join(base, 'nowhere'), '--data', bad).stderr, /nowhere: expected a model folder/);
  assert.match(fusedpo('train', '--model', sftDir, '--data', path.join(base, 'none.jsonl')).stderr, /none\.jsonl: no such file/);
  const simpo = fusedpo('train', '--model', sftDir, '--data', path.join(data, 'preferences.jsonl'), '--loss', 'simpo', '--label-smoothing', '0.1');
  assert.is(simpo.status, 1);
  assert.match(simpo.stderr, /Expected no labelSmoothing with loss 'simpo'/);
  assert.match(fusedpo('train', '--data', bad).stderr, /expected --model DIR/);
  assert.match(fusedpo('sft', '--data', bad, '--model', sftDir, '--layers', '3').stderr, /either --model or --layers/);
});

test("the README's training commands run as written (npx fusedpo: this package's cli; node_modules/fusedpo: this folder); docs/evaluation.md's figures are theirs", () => {
  const figures = require('../../scripts/doc-figures.js') as {
    readmeCommands(): string[][];
    runReadme(cwd: string): { outputs: { args: string[]; stdout: string; stderr: string }[]; figures: { eval: string; summary: string | null } };
    docBlock(doc: string, name: string): { simd: string; text: string } | null;
    compareFigures(documented: string, measured: string): string[];
    simdPath(): string | null;
  };
  assert.equal(figures.readmeCommands().map((c) => c[0]), ['sft', 'train', 'eval', 'generate', 'report']);
  const cwd = fs.mkdtempSync(path.join(base, 'readme-'));
  const { outputs, figures: measured } = figures.runReadme(cwd);
  const printed = outputs.map((o) => o.stdout);
  const metrics = fs.readFileSync(path.join(cwd, 'runs', 'minordpo', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const last = metrics.filter((m) => 'rewards/accuracies' in m).slice(-20);
  const accuracy = last.reduce((sum, m) => sum + m['rewards/accuracies'], 0) / last.length;
  assert.ok(accuracy >= 0.8, `the README's run learns the task: train accuracy over its last 20 steps ${accuracy}`);
  // fusedpo eval against the SFT model gives the trainer's last evaluation (the same beta)
  const evaluation = metrics.filter((m) => 'eval_loss' in m).at(-1);
  const table = printed[2];
  for (const [row, key] of [['reward accuracy', 'eval_rewards/accuracies'], ['reward margin', 'eval_rewards/margins']]) {
    const value = Number(new RegExp(`^${row} \\([^)]*\\)\\s+(-?[0-9.]+)`, 'm').exec(table)?.[1]);
    assert.ok(Math.abs(value - evaluation[key]) < 1e-3, `${row}: eval ${value}, the trainer's ${evaluation[key]}`);
  }
  assert.match(table, /task accuracy \(greedy generation checked\)\s+[0-9.]+\s+[0-9.]+/);
  assert.ok(printed[3].trim().length > 0, 'generate printed a completion');
  assert.ok(fs.readFileSync(path.join(cwd, 'runs', 'minordpo', 'report.html'), 'utf8').includes('<svg '), 'report wrote the charts');
  // the example outputs of docs/evaluation.md are this run's, within the tolerance the script states,
  // where the run takes the SIMD path they were made on and is not the sanitizers' build
  const doc = fs.readFileSync(path.join(root, 'docs', 'evaluation.md'), 'utf8');
  const simd = figures.simdPath();
  for (const [name, text] of [['eval', measured.eval], ['summary', measured.summary]] as const) {
    const documented = figures.docBlock(doc, name);
    assert.ok(documented !== null && text !== null, `docs/evaluation.md's ${name} block and the run's`);
    if (documented!.simd !== simd || process.env.FUSEDPO_SANITIZER) {
      console.log(`  docs/evaluation.md's ${name} block was made on the ${documented!.simd} path; this run takes ${simd}${process.env.FUSEDPO_SANITIZER ? ' under the sanitizers' : ''}: not compared`);
      continue;
    }
    const differences = figures.compareFigures(documented!.text, text!);
    assert.equal(differences, [], `docs/evaluation.md's ${name} block is stale (npm run docs:figures rewrites it):\n${differences.join('\n')}`);
  }
});

test('fusedpo generate: the API\'s tokens for the same seed, the completion decoded', () => {
  const hf = path.join(root, 'test', 'fixtures', 'hf-gpt2');
  const run = fusedpo('generate', '--model', hf, '--prompt', 'a b', '--temperature', '0.8', '--seed', '5', '--max-new-tokens', '6', '--json');
  assert.is(run.status, 0, run.stderr);
  const printed = JSON.parse(run.stdout) as { tokens: number[]; completion: string };
  const { loadPretrained } = require('../../lib/nn/pretrained') as typeof import('../../lib/nn/pretrained');
  const { model, tokenizer } = loadPretrained(hf);
  const tokens = model.generate(tokenizer!.encode('a b'), { temperature: 0.8, seed: 5, maxNewTokens: 6, stop: [tokenizer!.eosId] });
  assert.equal(printed.tokens, tokens);
  model.dispose();
  assert.match(fusedpo('generate', '--model', hf).stderr, /expected --prompt TEXT/);
});

test('fusedpo generate --chat: the prompt as a user message in the model\'s chat template (the package\'s own without one)', () => {
  const { loadPretrained, savePretrained, huggingFaceTokenizer } = require('../../lib/nn/pretrained') as typeof import('../../lib/nn/pretrained');
  const { GPT } = require('../../lib/nn/gpt') as typeof import('../../lib/nn/gpt');
  // GPT-2's fixture tokenizer on a model with room for a rendered prompt (the fixture's context is 16)
  const folder = path.join(base, 'hf-gpt2-chat');
  const model = new GPT({ layers: 1, width: 16, heads: 2, context: 64, vocab: 270 }, { seed: 3 });
  savePretrained(folder, model, huggingFaceTokenizer(path.join(root, 'test', 'fixtures', 'hf-gpt2')));
  model.dispose();
  const expectTokens = (rendered: string, printed: { tokens: number[] }): void => {
    const loaded = loadPretrained(folder);
    try {
      assert.is(loaded.tokenizer!.applyChatTemplate([{ role: 'user', content: 'a b' }], { addGenerationPrompt: true }), rendered);
      assert.equal(printed.tokens, loaded.model.generate(loaded.tokenizer!.encode(rendered), { temperature: 0, maxNewTokens: 6, stop: [loaded.tokenizer!.eosId] }));
    } finally {
      loaded.model.dispose();
    }
  };
  // no template in the folder: the package's own
  let run = fusedpo('generate', '--model', folder, '--prompt', 'a b', '--chat', '--max-new-tokens', '6', '--json');
  assert.is(run.status, 0, run.stderr);
  let printed = JSON.parse(run.stdout) as { prompt: string; rendered: string; tokens: number[]; completion: string };
  assert.is(printed.prompt, 'a b');
  assert.is(printed.rendered, '<|user|>\na b<|end|>\n<|assistant|>\n');
  expectTokens(printed.rendered, printed);
  // a tokenizer_config.json with a chat template: that template
  fs.writeFileSync(path.join(folder, 'tokenizer_config.json'), JSON.stringify({
    eos_token: '<|endoftext|>', chat_template: '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}',
  }));
  run = fusedpo('generate', '--model', folder, '--prompt', 'a b', '--chat', '--max-new-tokens', '6', '--json');
  assert.is(run.status, 0, run.stderr);
  printed = JSON.parse(run.stdout);
  assert.is(printed.rendered, 'user: a b\nassistant:');
  expectTokens(printed.rendered, printed);
  // a template that fails names its file, with the status of bad input
  fs.writeFileSync(path.join(folder, 'chat_template.jinja'), "{{ raise_exception('system prompt required') }}");
  run = fusedpo('generate', '--model', folder, '--prompt', 'a b', '--chat');
  assert.is(run.status, 1, run.stderr);
  assert.match(run.stderr, /chat_template\.jinja: the chat template failed: system prompt required/);
  assert.match(fusedpo('generate', '--help').stdout, /--chat/);
});

test.after(() => fs.rmSync(base, { recursive: true, force: true }));

test.run();
