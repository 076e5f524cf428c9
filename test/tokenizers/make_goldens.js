#!/usr/bin/env node
/**
 * Writes test/tokenizers/goldens/<name>.json: what Hugging Face's own JavaScript packages give for
 * the real tokenizers of Qwen3, Llama 3 and Gemma 3 (fetched by fetch.js), for real.test.ts to
 * hold fusedpo's BpeTokenizer to. It uses @huggingface/tokenizers and @huggingface/jinja directly,
 * none of lib/: the texts' ids (no special tokens added) and their decoding (special tokens kept,
 * no clean-up of spaces), and chat renderings (the template with the config's special tokens as
 * variables, as transformers gives them) and their ids. Run once, when models.json or the texts
 * change:
 *
 *   node test/tokenizers/make_goldens.js
 *
 * Shape of a golden file:
 *   { "package", "version", "texts": [{ "text", "ids": [...], "decoded" }],
 *     "chats": [{ "messages": [{ role, content }], "addGenerationPrompt", "rendered", "ids": [...] }] }
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { Tokenizer } = require('@huggingface/tokenizers');
const { Template } = require('@huggingface/jinja');
const { MODELS, tokenizerFolder } = require('./fetch');

/** Texts of every kind a dataset holds, and the special tokens' strings of all three models. */
const TEXTS = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  "It's what we'll do, isn't it? I'd say we've DONE it.",
  'café, été, naïve, Ärger, Straße, ﬁnancial, Å',
  'e\u0301 (e and a combining acute) and é',
  'Привет, мир! Γειά σου κόσμε.',
  'こんにちは世界。日本語のテキストです。',
  '你好，世界！这是中文文本。',
  '안녕하세요 세계',
  'مرحبا بالعالم',
  'emoji 😀👍🏽 and family 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  'a  b   c    d\t\te\n\nf\n \n g',
  '   leading and trailing   ',
  '\n\n\n\nnewlines\r\nand windows\r\n',
  'numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 0x1F 2024-07-26',
  '007 and 1e10 and ½ ² ٣',
  '<|endoftext|><|im_start|>user\nhi<|im_end|>',
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>',
  '<bos><start_of_turn>user\nhi<end_of_turn>\n<eos><pad>',
  '<think>\nreasoning\n</think>\n\nanswer',
  'function add(a, b) {\n  return a + b; // sum\n}\n',
  'def f(x):\n    if x > 0:\n        return [i ** 2 for i in range(x)]\n',
  '<div class="x">&nbsp;</div> {"key": [1, 2, {"n": null}]}',
  'SELECT * FROM t WHERE id = 42;',
  '\u00a0non-breaking\u3000ideographic space\u200bzero width',
  'x',
  '',
];

/** Conversations: system, user and assistant, with and without the generation prompt. */
const CHATS = [
  { messages: [{ role: 'user', content: 'What is 7+5?' }], addGenerationPrompt: true },
  { messages: [{ role: 'system', content: 'Answer with a number.' }, { role: 'user', content: 'What is 7+5?' }], addGenerationPrompt: true },
  {
    messages: [{ role: 'system', content: 'Answer with a number.' }, { role: 'user', content: 'What is 7+5?' }, { role: 'assistant', content: '12' }],
    addGenerationPrompt: false,
  },
  {
    messages: [
      { role: 'user', content: 'Bonjour ! 😀' }, { role: 'assistant', content: 'Salut, ça va ?' },
      { role: 'user', content: '日本語で答えて' }, { role: 'assistant', content: 'はい、わかりました。' },
    ],
    addGenerationPrompt: false,
  },
  { messages: [{ role: 'user', content: '  spaces around  ' }, { role: 'assistant', content: 'code:\n```js\nlet x = 1;\n```' }], addGenerationPrompt: false },
];

/** A special token's text as tokenizer_config.json gives it: a string, or { content }. */
function tokenText(value) {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof value.content === 'string') return value.content;
  return null;
}

/** The template's variables as transformers gives them: every *_token of the config that is a token. */
function templateVariables(config) {
  const variables = {};
  for (const [key, value] of Object.entries(config)) {
    if (key.endsWith('_token') && (value === null || tokenText(value) !== null)) variables[key] = value === null ? null : tokenText(value);
  }
  if (Array.isArray(config.additional_special_tokens)) variables.additional_special_tokens = config.additional_special_tokens.map(tokenText);
  for (const [key, value] of Object.entries(config.extra_special_tokens ?? {})) variables[key] = tokenText(value);
  return variables;
}

const goldens = path.join(__dirname, 'goldens');
fs.mkdirSync(goldens, { recursive: true });
for (const [name, model] of Object.entries(MODELS)) {
  const folder = tokenizerFolder(name);
  const json = JSON.parse(fs.readFileSync(path.join(folder, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(fs.readFileSync(path.join(folder, 'tokenizer_config.json'), 'utf8'));
  const tokenizer = new Tokenizer(json, config);
  const ids = (text) => tokenizer.encode(text, { add_special_tokens: false }).ids;
  const decode = (list) => (list.length === 0 ? '' : tokenizer.decode(list, { skip_special_tokens: false, clean_up_tokenization_spaces: false }));
  const template = new Template(config.chat_template);
  const variables = templateVariables(config);
  const golden = {
    package: model.package,
    version: model.version,
    texts: TEXTS.map((text) => ({ text, ids: ids(text), decoded: decode(ids(text)) })),
    chats: CHATS.map(({ messages, addGenerationPrompt }) => {
      const rendered = template.render({ ...variables, messages, add_generation_prompt: addGenerationPrompt });
      return { messages, addGenerationPrompt, rendered, ids: ids(rendered) };
    }),
  };
  const file = path.join(goldens, `${name}.json`);
  fs.writeFileSync(file, `${JSON.stringify(golden, null, 1)}\n`);
  console.log(`${path.relative(process.cwd(), file)}: ${golden.texts.length} texts, ${golden.chats.length} chats`);
}
