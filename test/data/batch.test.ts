/**
 * lib/data/batch.ts, from records to ids as TRL makes them (trl/trainer/dpo_trainer.py and
 * sft_trainer.py `_prepare_dataset`, trl/data_utils.py `apply_chat_template`):
 * - a conversation with a tokenizer that has a chat template: the prompt is the template with the
 *   generation prompt, each completion the rendering of prompt + completion less the prompt's;
 *   the template's special tokens only (no BOS put before, no end-of-text after);
 * - plain text, or a conversation in the package's own template: BOS before the prompt when the
 *   tokenizer adds one, end-of-text after each completion unless it ends with it, never twice;
 * - a record that cannot be rendered is a DatasetError naming its line (or skipped and listed);
 * - the byte tokenizer's ids are what they were.
 * The tokenizer is the hand-made fixture (test/fixtures/tokenizer-tiny.json) with <s> (270) and
 * a template that shows every token it writes.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { collatePreferences, tokenizePreferences, tokenizeSft } from '../../lib/data/batch';
import { DatasetError, preferenceRecord, sftRecord, type PreferenceRecord } from '../../lib/data/dataset';
import { BpeTokenizer, ByteTokenizer, type Tokenizer } from '../../lib/data/tokenizer';
import { GPT } from '../../lib/nn/gpt';
import { PreferenceTrainer, SftTrainer } from '../../lib/train/trainer';
import { rejection } from '../support/datasets';

const tinyFile = path.resolve(__dirname, '..', 'fixtures', 'tokenizer-tiny.json');
const EOS = 269, BOS = 270;

/** A Gemma-like template: BOS first, each turn `<role>content` ended by end-of-text, the generation prompt `<assistant>`. */
const TEMPLATE = '{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}';

/** The fixture with <s> added; `config` is its tokenizer_config.json (none: no template, no BOS). */
function tokenizer(config?: Record<string, unknown>): BpeTokenizer {
  const json = JSON.parse(fs.readFileSync(tinyFile, 'utf8'));
  json.added_tokens.push({ id: BOS, content: '<s>', special: true });
  return BpeTokenizer.fromJSON(json, 'tiny', config);
}

const templated = tokenizer({ bos_token: '<s>', eos_token: '<|endoftext|>', chat_template: TEMPLATE });
/** No template, and BOS added with special tokens (as Llama's and Gemma's tokenizers add it). */
const prepending = tokenizer({ bos_token: '<s>', add_bos_token: true });

const user = (content: string) => ({ role: 'user' as const, content });
const assistant = (content: string) => ({ role: 'assistant' as const, content });

function pair(value: unknown, line = 1): PreferenceRecord {
  return preferenceRecord(value, line).record;
}

test('a conversation with a chat template: the prompt with the generation prompt, the completion the rest of the rendering, no token added', () => {
  const record = pair({ prompt: [user('the thing?')], chosen: [assistant('the')], rejected: [assistant('thing ')] });
  const { pairs, report } = tokenizePreferences([record], templated, 100);
  const prompt = '<s><user>the thing?<|endoftext|><assistant>';
  assert.is(templated.applyChatTemplate(record.conversation!.prompt, { addGenerationPrompt: true }), prompt);
  assert.equal(pairs[0].prompt, templated.encode(prompt));
  assert.is(pairs[0].prompt[0], BOS);
  assert.is(pairs[0].prompt.filter((id) => id === BOS).length, 1, 'BOS once: the template wrote it, nothing added');
  // prompt + chosen rendered '...<assistant>the<|endoftext|>', less the prompt: the template's end of turn, no second end-of-text
  assert.equal(pairs[0].chosen, templated.encode('the<|endoftext|>'));
  assert.equal(pairs[0].chosen, [258, EOS]);
  // the template trims: 'thing ' is rendered 'thing'
  assert.equal(pairs[0].rejected, templated.encode('thing<|endoftext|>'));
  assert.equal(report, { records: 1, kept: 1, truncated: 0, promptFilled: 0, droppedLines: [] });
});

test('the implicit conversational form and SFT messages render the same way', () => {
  const implicit = pair({ chosen: [user('q'), assistant('a')], rejected: [user('q'), assistant('b')] });
  const explicit = pair({ prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('b')] });
  assert.equal(tokenizePreferences([implicit], templated, 100).pairs, tokenizePreferences([explicit], templated, 100).pairs);
  const sft = sftRecord({ messages: [user('q'), assistant('a'), user('again'), assistant('the')] }, 1).record;
  const { examples } = tokenizeSft([sft], templated, 100);
  assert.equal(examples[0].prompt, templated.encode('<s><user>q<|endoftext|><assistant>a<|endoftext|><user>again<|endoftext|><assistant>'));
  assert.equal(examples[0].completion, [258, EOS]);
});

test('plain text: BOS before the prompt when the tokenizer adds one, never twice; end-of-text after the completion unless it ends with it', () => {
  const records = [
    pair({ prompt: 'the', chosen: ' thing', rejected: ' thing<|endoftext|>' }, 1),
    pair({ prompt: '<s>the', chosen: 'a', rejected: 'b' }, 2),
    pair({ prompt: '', chosen: 'a', rejected: 'b' }, 3),
  ];
  const { pairs } = tokenizePreferences(records, prepending, 100);
  assert.equal(pairs[0].prompt, [BOS, 258]);
  assert.equal(pairs[0].chosen, [256, 104, 262, EOS]);
  assert.equal(pairs[0].rejected, [256, 104, 262, EOS], 'a completion ending with end-of-text gets no second one');
  assert.equal(pairs[1].prompt, [BOS, 258], 'a prompt starting with BOS gets no second one');
  assert.equal(pairs[2].prompt, [BOS], 'an empty prompt is BOS alone');
  // SFT's text form: the prompt is '', so the example starts with BOS, as TRL tokenizes the text
  const { examples } = tokenizeSft([sftRecord({ text: 'the' }, 1).record], prepending, 100);
  assert.equal(examples[0], { prompt: [BOS], completion: [258, EOS], line: 1 });
  // a tokenizer with a template still adds BOS to plain text when it adds one with special tokens
  const both = tokenizer({ bos_token: '<s>', add_bos_token: true, chat_template: TEMPLATE });
  assert.equal(tokenizePreferences([records[0]], both, 100).pairs[0].prompt, [BOS, 258]);
  // without add_bos_token, nothing is put before
  assert.equal(tokenizePreferences([records[0]], templated, 100).pairs[0].prompt, [258]);
});

test('a conversation without a chat template: the package\'s own template, BOS and end-of-text added as to text', () => {
  const record = pair({ prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('b')] });
  const { pairs } = tokenizePreferences([record], prepending, 100);
  assert.equal(pairs[0].prompt, [BOS, ...prepending.encode('<|user|>\nq<|end|>\n<|assistant|>\n')]);
  assert.equal(pairs[0].chosen, [...prepending.encode('a<|end|>\n'), EOS]);
});

test('the byte tokenizer: the ids it always gave (UTF-8 bytes, end-of-text 256 after each completion)', () => {
  const byte = new ByteTokenizer();
  const records = [
    pair({ prompt: 'ab', chosen: 'c', rejected: 'de<|endoftext|>' }, 1),
    pair({ prompt: [user('q')], chosen: [assistant('y')], rejected: [assistant('n')] }, 2),
  ];
  const { pairs } = tokenizePreferences(records, byte, 100);
  assert.equal(pairs[0].prompt, [97, 98]);
  assert.equal(pairs[0].chosen, [99, 256]);
  // the literal text is bytes to the byte tokenizer, not its end-of-text: 256 is still added
  assert.equal(pairs[0].rejected, [100, 101, ...Buffer.from('<|endoftext|>'), 256]);
  assert.equal(pairs[1].prompt, [...Buffer.from('<|user|>\nq<|end|>\n<|assistant|>\n')]);
  assert.equal(pairs[1].chosen, [...Buffer.from('y<|end|>\n'), 256]);
  assert.is(byte.padId, 256);
});

test('truncation with a template: a completion that fits exactly is not cut, one a token longer is', () => {
  const record = pair({ prompt: [user('q')], chosen: [assistant('the')], rejected: [assistant('the a')] });
  const promptLength = templated.encode(templated.applyChatTemplate([user('q')], { addGenerationPrompt: true })).length;
  // chosen is 'the<|endoftext|>': 2 ids; rejected 'the a<|endoftext|>': 4 ids
  const { pairs, report } = tokenizePreferences([record], templated, promptLength + 2);
  assert.equal(pairs[0].chosen, [258, EOS]);
  assert.equal(pairs[0].rejected, [258, 32]);
  assert.is(report.truncated, 1);
  assert.is(tokenizePreferences([pair({ prompt: [user('q')], chosen: [assistant('the')], rejected: [assistant('a')] })], templated, promptLength + 2).report.truncated, 0);
});

test('a record the template cannot render is a DatasetError naming its line, or with skip is left out and listed', () => {
  const strict = tokenizer({
    eos_token: '<|endoftext|>',
    chat_template: "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system messages') }}{% endif %}{{ m.content }}{% endfor %}",
  });
  const records = [
    pair({ prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('b')] }, 1),
    pair({ prompt: [{ role: 'system', content: 's' }, user('q')], chosen: [assistant('a')], rejected: [assistant('b')] }, 4),
  ];
  assert.throws(() => tokenizePreferences(records, strict, 100, { file: 'data.jsonl' }), (error: unknown) =>
    error instanceof DatasetError && error.file === 'data.jsonl' && error.line === 4
    && error.message === 'data.jsonl:4: tiny (its config): the chat template failed: no system messages');
  const skipped: [number, string][] = [];
  const { pairs, report } = tokenizePreferences(records, strict, 100, { file: 'data.jsonl', skip: (line, reason) => skipped.push([line, reason]) });
  assert.equal(pairs.map((p) => p.line), [1]);
  assert.equal(skipped, [[4, 'tiny (its config): the chat template failed: no system messages']]);
  assert.equal([report.records, report.kept], [2, 1]);
  // the generation prompt '>' is not rendered before a completion: the prompt is not the start of prompt + completion
  const mismatching = tokenizer({ eos_token: '<|endoftext|>', chat_template: '{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}>{% endif %}' });
  assert.throws(() => tokenizePreferences([records[0]], mismatching, 100), (error: unknown) =>
    error instanceof DatasetError && error.line === 1 && error.file === 'the records'
    && error.message === 'the records:1: the chat template renders the prompt alone otherwise than before its completion: from character 1 the prompt has ">" where prompt + completion has "a"');
  // chosen and rejected that the template renders alike (it trims) leave nothing to prefer
  assert.throws(() => tokenizePreferences([pair({ prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('a ')] }, 7)], templated, 100), (error: unknown) =>
    error instanceof DatasetError && error.line === 7 && /"chosen" and "rejected" render to the same text with the chat template/.test(error.message));
});

/** A fresh temporary folder, removed after `body`. */
async function inFolder(body: (directory: string) => Promise<void>): Promise<void> {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-batch-'));
  try {
    await body(directory);
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

test('the trainers: a record the template cannot render names its file and line, or is skipped and reported with skipBadLines', async () => {
  const strict = tokenizer({ eos_token: '<|endoftext|>', chat_template: "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system messages') }}{% endif %}<{{ m.role }}>{{ m.content }}{% endfor %}" });
  await inFolder(async (directory) => {
    const file = path.join(directory, 'sft.jsonl');
    fs.writeFileSync(file, [
      { messages: [user('q'), assistant('the')] },
      { messages: [{ role: 'system', content: 's' }, user('q'), assistant('a')] },
      { text: 'the thing' },
    ].map((value) => JSON.stringify(value)).join('\n'));
    const model = new GPT({ layers: 1, width: 8, heads: 2, context: 16, vocab: strict.vocabSize });
    try {
      const options = { model, tokenizer: strict as Tokenizer, train: file, steps: 1, batchSize: 2, save: false, progress: false as const };
      await rejection(new SftTrainer(options).train(), file, 2, 'tiny (its config): the chat template failed: no system messages');
      const result = await new SftTrainer({ ...options, skipBadLines: true }).train();
      assert.equal(result.skipped, [{ file, line: 2, reason: 'tiny (its config): the chat template failed: no system messages' }]);
      assert.is(result.data.kept, 2);
      const preferences = path.join(directory, 'preferences.jsonl');
      fs.writeFileSync(preferences, JSON.stringify({ prompt: [{ role: 'system', content: 's' }], chosen: [assistant('a')], rejected: [assistant('b')] }));
      await rejection(new PreferenceTrainer({ ...options, train: preferences }).train(), preferences, 1, /the chat template failed: no system messages$/);
    } finally {
      model.dispose();
    }
  });
});

test('padding: the pad token, else end-of-text (TRL), as the trainers collate', () => {
  assert.is(tokenizer({ pad_token: '<s>' }).padId, BOS);
  assert.is(templated.padId, EOS);
  const { pairs } = tokenizePreferences([pair({ prompt: 'the', chosen: 'a', rejected: 'thing' })], templated, 100);
  const batch = collatePreferences(pairs, { padId: templated.padId });
  const [rows, T] = batch.shape;
  assert.is(rows, 2);
  // the chosen row (the 1 + 2 = 3 ids, 2 inputs) is padded with end-of-text to the rejected row's length
  assert.equal(Array.from(batch.tokens.subarray(0, T)), [258, 97, ...new Array(T - 2).fill(EOS)]);
});

test.run();
