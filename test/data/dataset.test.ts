/**
 * lib/data/dataset.ts: every TRL form of preference and SFT records gives the exact strings the
 * module comment promises (the implicit prompt's prefix, surrogate pairs kept whole, the chat
 * template); .jsonl and .json files read with blank lines, CRLF and a byte order mark; every bad
 * file or record fails with its file and line in the message, or is skipped and listed; a record
 * that would train on nothing (an empty completion, chosen equal to rejected) is refused; and a
 * .jsonl file is streamed, not read whole. Hostile files (long lines, bad UTF-8, duplicated keys,
 * random bytes) are in dataset-hostile.test.ts.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { rejection } from '../support/datasets';

import {
  CHAT_END_MARKER,
  CHAT_GENERATION_PROMPT,
  type ChatMessage,
  DatasetError,
  preferenceRecord,
  readPreferenceDataset,
  readSftDataset,
  renderChat,
  renderChatCompletion,
  sftRecord,
} from '../../lib/data/dataset';

const fixtures = path.join(__dirname, '..', '..', 'examples', 'data');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-dataset-'));
let fileCount = 0;

/** A new file in the scratch folder holding `text`; `name` ends with the extension wanted. */
function write(name: string, text: string | Buffer): string {
  const file = path.join(scratch, `${fileCount++}-${name}`);
  fs.writeFileSync(file, text);
  return file;
}

/** A .jsonl file of these values, one a line. */
function jsonl(values: unknown[], name = 'data.jsonl'): string {
  return write(name, values.map((value) => JSON.stringify(value)).join('\n') + '\n');
}


/** The plain Error that `run` throws. */
function thrown(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.instance(error, Error);
    assert.not.instance(error, DatasetError);
    return (error as Error).message;
  }
  assert.unreachable('expected an Error');
  throw new Error('unreachable');
}

const user = (content: string): ChatMessage => ({ role: 'user', content });
const assistant = (content: string): ChatMessage => ({ role: 'assistant', content });
const system = (content: string): ChatMessage => ({ role: 'system', content });

test.after(() => fs.rmSync(scratch, { recursive: true, force: true }));

// --- The chat template -------------------------------------------------------------------------

test('renderChat: each message as <|role|>\\n content <|end|>\\n, the generation prompt on request', () => {
  const messages = [system('Be brief.'), user('Hi'), assistant('Hello'), user('2+2?')];
  const body = '<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|user|>\n2+2?<|end|>\n';
  assert.is(renderChat(messages, { generationPrompt: false }), body);
  assert.is(renderChat(messages, { generationPrompt: true }), body + '<|assistant|>\n');
  assert.is(renderChat([], { generationPrompt: true }), '<|assistant|>\n');
  assert.is(renderChat([], { generationPrompt: false }), '');
  assert.is(CHAT_END_MARKER, '<|end|>');
  assert.is(CHAT_GENERATION_PROMPT, '<|assistant|>\n');
  assert.is(renderChatCompletion([assistant('4')]), '4<|end|>\n');
  assert.is(renderChatCompletion([assistant('4'), user('thanks')]), '4<|end|>\n<|user|>\nthanks<|end|>\n');
  // prompt + completion is the whole conversation rendered
  assert.is(
    renderChat([user('q')], { generationPrompt: true }) + renderChatCompletion([assistant('a')]),
    renderChat([user('q'), assistant('a')], { generationPrompt: false }),
  );
});

// --- Preference records --------------------------------------------------------------------------

test('preference: standard explicit prompt, extra fields ignored', () => {
  const { record, form } = preferenceRecord({ id: 7, score: 0.5, prompt: 'P: ', chosen: 'yes', rejected: 'no' }, 3);
  assert.is(form, 'explicit');
  assert.equal(record, { prompt: 'P: ', chosen: 'yes', rejected: 'no', line: 3 });
  // an explicit prompt is taken as it is, even when chosen and rejected share a start
  assert.equal(preferenceRecord({ prompt: '', chosen: 'ab', rejected: 'ac' }, 1).record, { prompt: '', chosen: 'ab', rejected: 'ac', line: 1 });
});

test('preference: implicit prompt is the longest common prefix', () => {
  const { record, form } = preferenceRecord({ chosen: 'The sky is blue.', rejected: 'The sky is green.' }, 1);
  assert.is(form, 'implicit');
  assert.equal(record, { prompt: 'The sky is ', chosen: 'blue.', rejected: 'green.', line: 1 });
  // nothing in common: the prompt is empty
  assert.equal(preferenceRecord({ chosen: 'yes', rejected: 'no' }, 2).record, { prompt: '', chosen: 'yes', rejected: 'no', line: 2 });
  // chosen is a prefix of rejected, or the other way round: the shorter one would be empty
  assert.is(
    thrown(() => preferenceRecord({ chosen: '2+2=4', rejected: '2+2=45' }, 1)),
    '"chosen" is empty once the common prefix (the prompt) is taken off: "rejected" starts with all of "chosen"',
  );
  assert.is(
    thrown(() => preferenceRecord({ chosen: '2+2=45', rejected: '2+2=4' }, 1)),
    '"rejected" is empty once the common prefix (the prompt) is taken off: "chosen" starts with all of "rejected"',
  );
  assert.match(thrown(() => preferenceRecord({ chosen: 'same', rejected: 'same' }, 1)), /^"chosen" equals "rejected"/);
});

test('preference: the implicit prefix never splits a surrogate pair', () => {
  // 😀 is \uD83D\uDE00 and 😃 is \uD83D\uDE03: they share their high surrogate
  const { record } = preferenceRecord({ chosen: 'Mood: 😀', rejected: 'Mood: 😃' }, 1);
  assert.equal(record, { prompt: 'Mood: ', chosen: '😀', rejected: '😃', line: 1 });
  // a pair one string completes and the other leaves unpaired goes whole to the completions
  const lone = preferenceRecord({ chosen: 'x\uD83D', rejected: 'x😀' }, 1).record;
  assert.equal(lone, { prompt: 'x', chosen: '\uD83D', rejected: '😀', line: 1 });
  // a whole shared pair stays in the prompt
  assert.equal(preferenceRecord({ chosen: '😀a', rejected: '😀b' }, 1).record, { prompt: '😀', chosen: 'a', rejected: 'b', line: 1 });
});

test('preference: conversational, explicit prompt', () => {
  const { record, form } = preferenceRecord(
    {
      prompt: [system('Answer with a number.'), user('2+3?')],
      chosen: [assistant('5')],
      rejected: [{ role: 'assistant', content: '6', name: 'bot' }],
    },
    4,
  );
  assert.is(form, 'conversational');
  assert.equal(record, {
    prompt: '<|system|>\nAnswer with a number.<|end|>\n<|user|>\n2+3?<|end|>\n<|assistant|>\n',
    chosen: '5<|end|>\n',
    rejected: '6<|end|>\n',
    line: 4,
    // the messages, for a tokenizer's own chat template to render (a message's other fields are dropped)
    conversation: { prompt: [system('Answer with a number.'), user('2+3?')], chosen: [assistant('5')], rejected: [assistant('6')] },
  });
});

test('preference: conversational, implicit prompt (the shared leading messages)', () => {
  const { record, form } = preferenceRecord(
    {
      chosen: [user('Hi'), assistant('Hello!'), user('2+3?'), assistant('5')],
      rejected: [user('Hi'), assistant('Hello!'), user('2+3?'), assistant('6'), user('sure?')],
    },
    9,
  );
  assert.is(form, 'conversational-implicit');
  assert.equal(record, {
    prompt: '<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\n2+3?<|end|>\n<|assistant|>\n',
    chosen: '5<|end|>\n',
    rejected: '6<|end|>\n<|user|>\nsure?<|end|>\n',
    line: 9,
    conversation: {
      prompt: [user('Hi'), assistant('Hello!'), user('2+3?')],
      chosen: [assistant('5')],
      rejected: [assistant('6'), user('sure?')],
    },
  });
  assert.match(thrown(() => preferenceRecord({ chosen: [user('a'), assistant('b')], rejected: [user('a'), assistant('b')] }, 1)), /^"chosen" equals "rejected"/);
  assert.is(
    thrown(() => preferenceRecord({ chosen: [user('a'), assistant('b')], rejected: [user('a')] }, 1)),
    '"rejected" is empty once the common leading messages (the prompt) are taken off',
  );
  // the conversations part at a user message: the completions would not be the assistant's reply
  assert.match(
    thrown(() => preferenceRecord({ chosen: [user('a'), assistant('b')], rejected: [user('c'), assistant('b')] }, 1)),
    /^"chosen" must start with an assistant message once the common leading messages \(the prompt\) are taken off .* but starts with a user message$/,
  );
});

test('preference: a record that would train on nothing is refused, an empty prompt is not', () => {
  const reason = (value: unknown) => thrown(() => preferenceRecord(value, 1));
  // the explicit string form: empty completions, and two equal ones
  assert.is(reason({ prompt: 'p', chosen: '', rejected: 'r' }), '"chosen" is empty (a completion must hold something to score)');
  assert.is(reason({ prompt: 'p', chosen: 'c', rejected: '' }), '"rejected" is empty (a completion must hold something to score)');
  assert.is(reason({ prompt: 'p', chosen: '', rejected: '' }), '"chosen" is empty (a completion must hold something to score)');
  assert.is(reason({ prompt: 'p', chosen: 'same', rejected: 'same' }), '"chosen" equals "rejected", so there is nothing to prefer');
  assert.equal(preferenceRecord({ prompt: '', chosen: 'c', rejected: 'r' }, 1).record, { prompt: '', chosen: 'c', rejected: 'r', line: 1 });
  // conversational, explicit prompt: a reply with content '' and nothing after it says nothing
  const prompt = [user('q')];
  assert.is(
    reason({ prompt, chosen: [assistant('')], rejected: [assistant('b')] }),
    `"chosen"[0].content is empty and no message follows it: the assistant's reply says nothing`,
  );
  assert.is(
    reason({ prompt, chosen: [assistant('a')], rejected: [assistant('')] }),
    `"rejected"[0].content is empty and no message follows it: the assistant's reply says nothing`,
  );
  assert.is(
    reason({ prompt, chosen: [assistant('a')], rejected: [assistant('a')] }),
    '"chosen" and "rejected" render to the same text, so there is nothing to prefer',
  );
  // the template does not escape: these messages differ but train on the same text
  assert.is(
    reason({ prompt, chosen: [assistant('a'), user('b')], rejected: [assistant('a<|end|>\n<|user|>\nb')] }),
    '"chosen" and "rejected" render to the same text, so there is nothing to prefer',
  );
  // an empty reply that something follows still has text to score, and an empty prompt list is a prompt
  assert.equal(preferenceRecord({ prompt, chosen: [assistant(''), user('more')], rejected: [assistant('b')] }, 1).record.chosen, '<|end|>\n<|user|>\nmore<|end|>\n');
  assert.is(preferenceRecord({ prompt: [], chosen: [assistant('a')], rejected: [assistant('b')] }, 1).record.prompt, '<|assistant|>\n');
  // conversational, implicit prompt: the message is named by its index in the whole list
  assert.is(
    reason({ chosen: [user('q'), assistant('')], rejected: [user('q'), assistant('b')] }),
    `"chosen"[1].content is empty and no message follows it: the assistant's reply says nothing`,
  );
});

test('preference: wrong fields and messages are named', () => {
  const reason = (value: unknown) => thrown(() => preferenceRecord(value, 1));
  assert.is(reason({ prompt: 'p', chosen: 3, rejected: 'r' }), 'expected a string for "chosen" but received 3 of type number');
  assert.is(reason({ prompt: 'p', chosen: 'c' }), 'missing "rejected": expected a string');
  assert.is(reason({ prompt: 7, chosen: 'c', rejected: 'r' }), 'expected a string or a list of messages for "prompt" but received 7 of type number');
  assert.is(reason({ rejected: 'r' }), 'missing "chosen": expected a string or a list of messages');
  assert.is(reason({ chosen: null, rejected: 'r' }), 'expected a string or a list of messages for "chosen" but received null');
  assert.is(reason({ chosen: 'c', rejected: ['r'] }), 'expected a string for "rejected" but received an array of length 1');
  assert.is(reason([1, 2]), 'expected a JSON object but received an array of length 2');
  assert.is(reason(null), 'expected a JSON object but received null');
  assert.is(reason('text'), "expected a JSON object but received 'text' of type string");
  const conversation = { prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('b')] };
  assert.is(reason({ ...conversation, prompt: [{ content: 'q' }] }), '"prompt"[0] has no "role"');
  assert.is(reason({ ...conversation, chosen: [{ role: 'assistant' }] }), '"chosen"[0] has no "content"');
  assert.is(
    reason({ ...conversation, prompt: [user('q'), { role: 'tool', content: 'x' }] }),
    `expected 'system', 'user' or 'assistant' for "prompt"[1].role but received 'tool' of type string`,
  );
  assert.is(reason({ ...conversation, rejected: [{ role: 'assistant', content: 5 }] }), 'expected a string for "rejected"[0].content but received 5 of type number');
  assert.is(reason({ ...conversation, rejected: ['b'] }), `expected a message {role, content} for "rejected"[0] but received 'b' of type string`);
  assert.is(reason({ ...conversation, chosen: 'a' }), `expected a list of messages for "chosen" but received 'a' of type string`);
  assert.is(reason({ ...conversation, chosen: [] }), '"chosen" is empty');
  assert.match(reason({ ...conversation, chosen: [user('a')] }), /^"chosen" must start with an assistant message .*starts with a user message$/);
});

// --- SFT records -------------------------------------------------------------------------------

test('sft: prompt-completion, text, conversational messages and conversational prompt-completion', () => {
  assert.equal(sftRecord({ prompt: '2+3=', completion: '5', id: 'a' }, 1), { record: { prompt: '2+3=', completion: '5', line: 1 }, form: 'prompt-completion' });
  assert.equal(sftRecord({ text: 'Once upon a time' }, 2), { record: { prompt: '', completion: 'Once upon a time', line: 2 }, form: 'text' });
  assert.equal(sftRecord({ messages: [system('S'), user('Hi'), assistant('Hello'), user('2+3?'), assistant('5')] }, 3), {
    record: {
      prompt: '<|system|>\nS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n<|user|>\n2+3?<|end|>\n<|assistant|>\n',
      completion: '5<|end|>\n',
      line: 3,
      conversation: { prompt: [system('S'), user('Hi'), assistant('Hello'), user('2+3?')], completion: [assistant('5')] },
    },
    form: 'conversational',
  });
  assert.equal(sftRecord({ prompt: [user('2+3?')], completion: [assistant('5')] }, 4), {
    record: { prompt: '<|user|>\n2+3?<|end|>\n<|assistant|>\n', completion: '5<|end|>\n', line: 4, conversation: { prompt: [user('2+3?')], completion: [assistant('5')] } },
    form: 'conversational-prompt-completion',
  });
});

test('sft: an empty completion is refused, an empty prompt is not', () => {
  const reason = (value: unknown) => thrown(() => sftRecord(value, 1));
  assert.is(reason({ prompt: 'p', completion: '' }), '"completion" is empty (an example must hold something to learn)');
  assert.is(reason({ text: '' }), '"text" is empty (an example must hold something to learn)');
  assert.is(reason({ messages: [user('q'), assistant('')] }), '"messages"[1].content is empty: the assistant message to learn says nothing');
  assert.is(
    reason({ prompt: [user('q')], completion: [assistant('')] }),
    `"completion"[0].content is empty and no message follows it: the assistant's reply says nothing`,
  );
  assert.equal(sftRecord({ prompt: '', completion: 'c' }, 1).record, { prompt: '', completion: 'c', line: 1 });
  // an empty earlier assistant message is part of the prompt, not what is learned
  assert.is(sftRecord({ messages: [user('q'), assistant(''), user('again'), assistant('a')] }, 1).record.completion, 'a<|end|>\n');
});

test('sft: wrong records are named', () => {
  const reason = (value: unknown) => thrown(() => sftRecord(value, 1));
  assert.is(reason({ prompt: 'p' }), 'missing "completion": expected a string');
  assert.is(reason({ completion: 'c' }), 'missing "prompt": expected a string');
  assert.is(reason({ prompt: 'p', completion: 5 }), 'expected a string for "completion" but received 5 of type number');
  assert.is(reason({ text: false }), 'expected a string for "text" but received false of type boolean');
  assert.is(reason({}), 'expected "prompt" and "completion", "text", or "messages" but found no fields');
  assert.is(reason({ id: 1, input: 'x' }), 'expected "prompt" and "completion", "text", or "messages" but found only "id", "input"');
  assert.is(reason({ messages: [user('a')] }), '"messages" has no assistant message to learn');
  assert.is(reason({ messages: [user('a'), assistant('b'), user('c')] }), '"messages" must end with the assistant message to learn but ends with a user message');
  assert.is(reason({ messages: [{ role: 'bot', content: 'x' }] }), `expected 'system', 'user' or 'assistant' for "messages"[0].role but received 'bot' of type string`);
  assert.is(reason(42), 'expected a JSON object but received 42 of type number');
});

// --- Files -------------------------------------------------------------------------------------

test('jsonl: every preference form in one file, lines counted from 1, blank lines skipped', async () => {
  const file = write(
    'mixed.jsonl',
    [
      JSON.stringify({ prompt: 'a', chosen: 'b', rejected: 'c' }),
      '',
      '   ',
      JSON.stringify({ chosen: 'x=1', rejected: 'x=2' }),
      JSON.stringify({ prompt: [user('q')], chosen: [assistant('y')], rejected: [assistant('n')] }),
      JSON.stringify({ chosen: [user('q'), assistant('y')], rejected: [user('q'), assistant('n')] }),
      JSON.stringify({ prompt: 'd', chosen: 'e', rejected: 'f' }),
    ].join('\n'),  // and no newline at the end
  );
  const read = await readPreferenceDataset(file);
  assert.is(read.file, file);
  assert.equal(read.records, [
    { prompt: 'a', chosen: 'b', rejected: 'c', line: 1 },
    { prompt: 'x=', chosen: '1', rejected: '2', line: 4 },
    { prompt: '<|user|>\nq<|end|>\n<|assistant|>\n', chosen: 'y<|end|>\n', rejected: 'n<|end|>\n', line: 5, conversation: { prompt: [user('q')], chosen: [assistant('y')], rejected: [assistant('n')] } },
    { prompt: '<|user|>\nq<|end|>\n<|assistant|>\n', chosen: 'y<|end|>\n', rejected: 'n<|end|>\n', line: 6, conversation: { prompt: [user('q')], chosen: [assistant('y')], rejected: [assistant('n')] } },
    { prompt: 'd', chosen: 'e', rejected: 'f', line: 7 },
  ]);
  assert.equal(read.skipped, []);
  assert.equal(read.forms, { explicit: 2, implicit: 1, conversational: 1, 'conversational-implicit': 1 });
});

test('jsonl: CRLF line endings and a UTF-8 byte order mark', async () => {
  const lines = [{ prompt: 'p1', completion: 'c1' }, { text: 'é 😀' }].map((value) => JSON.stringify(value));
  const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'utf8')]);
  const read = await readSftDataset(write('crlf.jsonl', bytes));
  assert.equal(read.records, [
    { prompt: 'p1', completion: 'c1', line: 1 },
    { prompt: '', completion: 'é 😀', line: 2 },
  ]);
  assert.equal(read.forms, { 'prompt-completion': 1, text: 1 });
  // CR inside a string stays the string's own (JSON escapes it)
  const escaped = await readSftDataset(jsonl([{ prompt: 'a\r\n', completion: 'b' }]));
  assert.is(escaped.records[0].prompt, 'a\r\n');
});

test('json: an array of records, its index + 1 as the line, with a byte order mark', async () => {
  const values = [{ prompt: 'p', chosen: 'c', rejected: 'r' }, { chosen: 'ab', rejected: 'ac' }];
  const read = await readPreferenceDataset(write('data.json', '\uFEFF' + JSON.stringify(values, null, 2)));
  assert.equal(read.records, [
    { prompt: 'p', chosen: 'c', rejected: 'r', line: 1 },
    { prompt: 'a', chosen: 'b', rejected: 'c', line: 2 },
  ]);
  assert.equal(read.forms, { explicit: 1, implicit: 1 });
  const sft = await readSftDataset(write('sft.JSON', JSON.stringify([{ messages: [user('u'), assistant('a')] }])));
  assert.equal(sft.records, [{ prompt: '<|user|>\nu<|end|>\n<|assistant|>\n', completion: 'a<|end|>\n', line: 1, conversation: { prompt: [user('u')], completion: [assistant('a')] } }]);
});

test('file errors: missing, a directory, unreadable, unknown extension, not JSON, not an array', async () => {
  const missing = path.join(scratch, 'absent.jsonl');
  await rejection(readPreferenceDataset(missing), missing, null, 'no such file');
  const folder = path.join(scratch, 'folder.jsonl');
  fs.mkdirSync(folder);
  await rejection(readSftDataset(folder), folder, null, 'is a directory, not a dataset file');
  // a path through a file is unreadable whoever runs the test (a root user reads a chmod 000 file)
  const through = path.join(write('plain.json', '[]'), 'inner.jsonl');
  await rejection(readPreferenceDataset(through), through, null, /: cannot be read: ENOTDIR/);
  if (process.platform !== 'win32' && process.getuid?.() !== 0) {
    const locked = write('locked.jsonl', '{}\n');
    fs.chmodSync(locked, 0o000);
    await rejection(readPreferenceDataset(locked), locked, null, /: cannot be read: EACCES/);
  }
  const text = write('data.txt', '{}');
  await rejection(readPreferenceDataset(text), text, null, "unknown dataset extension '.txt'; accepted: .jsonl, .json");
  const bare = write('data', '{}');
  await rejection(readSftDataset(bare), bare, null, 'unknown dataset extension (none); accepted: .jsonl, .json');
  const broken = write('broken.json', '[{"prompt": "a",');
  await rejection(readSftDataset(broken), broken, null, /: not valid JSON: .+/);
  const object = write('object.json', '{"prompt": "a", "completion": "b"}');
  await rejection(readSftDataset(object), object, null, 'expected a JSON array of records but received an object of type Object');
});

test('record errors carry the file and the line', async () => {
  const good = JSON.stringify({ prompt: 'p', chosen: 'c', rejected: 'r' });
  const lines = (bad: string, at: number) => write('data.jsonl', [...Array(at - 1).fill(good), bad, good].join('\n'));
  let file = lines('{"prompt": "p", "chosen": 3, "rejected": "r"}', 3);
  await rejection(readPreferenceDataset(file), file, 3, 'expected a string for "chosen" but received 3 of type number');
  file = lines('{"prompt": "p", "chosen": ', 7);
  await rejection(readPreferenceDataset(file), file, 7, /^.*:7: not valid JSON: .+/);
  file = lines('[1, 2]', 2);
  await rejection(readPreferenceDataset(file), file, 2, 'expected a JSON object but received an array of length 2');
  file = lines('null', 1);
  await rejection(readPreferenceDataset(file), file, 1, 'expected a JSON object but received null');
  file = lines('{"prompt": "p", "chosen": "c"}', 4);
  await rejection(readPreferenceDataset(file), file, 4, 'missing "rejected": expected a string');
  file = lines(JSON.stringify({ prompt: [{ content: 'q' }], chosen: [assistant('a')], rejected: [assistant('b')] }), 2);
  await rejection(readPreferenceDataset(file), file, 2, '"prompt"[0] has no "role"');
  file = lines(JSON.stringify({ prompt: [{ role: 'tool', content: 'q' }], chosen: [assistant('a')], rejected: [assistant('b')] }), 2);
  await rejection(readPreferenceDataset(file), file, 2, `expected 'system', 'user' or 'assistant' for "prompt"[0].role but received 'tool' of type string`);
  file = lines(JSON.stringify({ chosen: 'same', rejected: 'same' }), 5);
  await rejection(readPreferenceDataset(file), file, 5, /:5: "chosen" equals "rejected"/);
  file = lines(JSON.stringify({ chosen: 'abc', rejected: 'abcd' }), 6);
  await rejection(readPreferenceDataset(file), file, 6, /:6: "chosen" is empty once the common prefix \(the prompt\) is taken off/);
  // in a .json array the line is the index + 1
  file = write('data.json', JSON.stringify([{ prompt: 'p', completion: 'c' }, { prompt: 'p' }]));
  await rejection(readSftDataset(file), file, 2, 'missing "completion": expected a string');
});

test('an empty dataset is an error, also when every record was skipped', async () => {
  for (const [name, text] of [['empty.jsonl', ''], ['blank.jsonl', '\n  \r\n\n'], ['bom.jsonl', '\uFEFF\n'], ['empty.json', '[]']]) {
    const file = write(name, text);
    await rejection(readPreferenceDataset(file), file, null, 'no records');
  }
  const file = write('bad.jsonl', 'nope\n{"prompt": "p"}\n[]\n');
  await rejection(
    readPreferenceDataset(file, { skipBadLines: true }),
    file,
    null,
    /: no records \(all 3 were skipped as bad; the first, line 1: not valid JSON: .+\)$/,
  );
  const one = write('one.jsonl', '{"text": 1}\n');
  await rejection(readSftDataset(one, { skipBadLines: true }), one, null, /: no records \(the one record was skipped as bad: line 1: expected a string for "text"/);
});

test('skipBadLines: bad records are listed with their line and reason, reading goes on', async () => {
  const file = write(
    'some-bad.jsonl',
    [
      '{"prompt": "a", "chosen": "b", "rejected": "c"}',
      '{not json',
      '',
      '{"prompt": "a", "chosen": 3, "rejected": "c"}',
      '{"chosen": "same", "rejected": "same"}',
      '{"chosen": "ab", "rejected": "ac"}',
      '"a string"',
    ].join('\n'),
  );
  const read = await readPreferenceDataset(file, { skipBadLines: true });
  assert.equal(read.records, [
    { prompt: 'a', chosen: 'b', rejected: 'c', line: 1 },
    { prompt: 'a', chosen: 'b', rejected: 'c', line: 6 },
  ]);
  assert.equal(read.skipped.map((bad) => bad.line), [2, 4, 5, 7]);
  assert.match(read.skipped[0].reason, /^not valid JSON: /);
  assert.is(read.skipped[1].reason, 'expected a string for "chosen" but received 3 of type number');
  assert.match(read.skipped[2].reason, /^"chosen" equals "rejected"/);
  assert.is(read.skipped[3].reason, "expected a JSON object but received 'a string' of type string");
  assert.equal(read.forms, { explicit: 1, implicit: 1 });
  // without the option the first bad record stops the reading
  await rejection(readPreferenceDataset(file), file, 2, /:2: not valid JSON: /);
  // in a .json array too
  const array = write('some-bad.json', JSON.stringify([{ text: 'a' }, { text: 2 }, { text: 'b' }]));
  const sft = await readSftDataset(array, { skipBadLines: true });
  assert.equal(sft.records.map((record) => record.line), [1, 3]);
  assert.equal(sft.skipped, [{ line: 2, reason: 'expected a string for "text" but received 2 of type number' }]);
});

test('skipBadLines: records that would train on nothing are listed like any bad record', async () => {
  const file = jsonl([
    { prompt: 'p', chosen: 'c', rejected: 'r' },
    { prompt: 'p', chosen: '', rejected: 'r' },
    { prompt: 'p', chosen: 'c', rejected: 'c' },
    { prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('')] },
    { prompt: [user('q')], chosen: [assistant('a')], rejected: [assistant('a')] },
    { prompt: '', chosen: 'c', rejected: 'r' },
  ]);
  const read = await readPreferenceDataset(file, { skipBadLines: true });
  assert.equal(read.records.map((record) => record.line), [1, 6]);
  assert.equal(read.skipped, [
    { line: 2, reason: '"chosen" is empty (a completion must hold something to score)' },
    { line: 3, reason: '"chosen" equals "rejected", so there is nothing to prefer' },
    { line: 4, reason: `"rejected"[0].content is empty and no message follows it: the assistant's reply says nothing` },
    { line: 5, reason: '"chosen" and "rejected" render to the same text, so there is nothing to prefer' },
  ]);
  await rejection(readPreferenceDataset(file), file, 2, '"chosen" is empty (a completion must hold something to score)');
  const sft = write('empty.json', JSON.stringify([{ text: '' }, { prompt: 'p', completion: '' }, { text: 't' }]));
  assert.equal((await readSftDataset(sft, { skipBadLines: true })).skipped.map((bad) => bad.line), [1, 2]);
  await rejection(readSftDataset(sft), sft, 1, '"text" is empty (an example must hold something to learn)');
});

test('limit: stops after that many records (skipped ones do not count), and lines after it are not read', async () => {
  const file = write('limit.jsonl', ['{"text": "a"}', '{"text": 1}', '{"text": "b"}', '{"text": "c"}', 'not json at all'].join('\n'));
  const read = await readSftDataset(file, { limit: 2, skipBadLines: true });
  assert.equal(read.records.map((record) => record.completion), ['a', 'b']);
  assert.equal(read.skipped.map((bad) => bad.line), [2]);
  // the broken last line is never reached
  assert.equal((await readSftDataset(file, { limit: 1 })).records.length, 1);
  const array = write('limit.json', JSON.stringify([{ text: 'a' }, { text: 'b' }, { text: 3 }]));
  assert.equal((await readSftDataset(array, { limit: 2 })).records.map((record) => record.line), [1, 2]);
  assert.equal((await readSftDataset(file, { limit: 100, skipBadLines: true })).records.length, 3);
});

test('options are checked', async () => {
  const file = jsonl([{ text: 'a' }]);
  for (const limit of [0, -1, 1.5, NaN, Infinity]) {
    try {
      await readSftDataset(file, { limit });
      assert.unreachable(`limit ${limit}`);
    } catch (error) {
      assert.instance(error, RangeError);
      assert.match((error as Error).message, /^Expected a positive integer for limit but received /);
    }
  }
  for (const maxLineBytes of [0, -1, 1.5, NaN, Infinity, 2 ** 40, '64' as unknown as number]) {
    try {
      await readSftDataset(file, { maxLineBytes });
      assert.unreachable(`maxLineBytes ${String(maxLineBytes)}`);
    } catch (error) {
      assert.instance(error, RangeError);
      assert.match((error as Error).message, /^Expected a positive integer no larger than \d+ \(V8's longest string\) for maxLineBytes but received /);
    }
  }
  try {
    await readSftDataset(file, { skipBadLines: 'yes' as unknown as boolean });
    assert.unreachable('skipBadLines');
  } catch (error) {
    assert.instance(error, TypeError);
    assert.is((error as Error).message, "Expected a boolean for skipBadLines but received 'yes' of type string");
  }
});

test('a large .jsonl file streams: 200k lines read and counted quickly', async () => {
  const count = 200_000;
  const line = '{"prompt":"1+2=","chosen":"3","rejected":"4"}\n';
  const file = write('large.jsonl', line.repeat(count));
  const started = Date.now();
  const read = await readPreferenceDataset(file);
  const seconds = (Date.now() - started) / 1000;
  assert.is(read.records.length, count);
  assert.is(read.records[count - 1].line, count);
  assert.equal(read.forms, { explicit: count });
  assert.ok(seconds < 2, `read in ${seconds} s`);
});

test('a .jsonl file is read as a stream: records arrive before its end (a FIFO never closed)', async () => {
  // A reader that read the whole file first would wait forever for the end of this FIFO; a
  // streaming one returns once `limit` records have come.
  if (process.platform === 'win32' || spawnSync('mkfifo', ['--help']).error) return;
  const fifo = path.join(scratch, 'stream.jsonl');
  assert.is(spawnSync('mkfifo', [fifo]).status, 0);
  const writer = fs.createWriteStream(fifo);
  writer.on('error', () => {});  // EPIPE once the reader has gone
  writer.write('{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the reader waited for the end of the file')), 1500);
  });
  try {
    const read = await Promise.race([readSftDataset(fifo, { limit: 2 }), timeout]);
    assert.equal(read.records.map((record) => record.completion), ['a', 'b']);
  } finally {
    clearTimeout(timer);
    writer.destroy();
  }
});

// --- The fixtures --------------------------------------------------------------------------------

/** The prompt `a+b=` of single digits, or null. */
function sumOf(prompt: string): number | null {
  const match = /^(\d)\+(\d)=$/.exec(prompt);
  return match ? Number(match[1]) + Number(match[2]) : null;
}

test('fixtures: single-digit sums, the right answer chosen, a near miss rejected, evaluation held out', async () => {
  const train = await readPreferenceDataset(path.join(fixtures, 'preferences.jsonl'));
  const held = await readPreferenceDataset(path.join(fixtures, 'preferences-eval.jsonl'));
  const sft = await readSftDataset(path.join(fixtures, 'sft.jsonl'));
  assert.is(train.records.length, 60);
  assert.is(held.records.length, 20);
  assert.is(sft.records.length, 60);
  for (const read of [train, held]) {
    assert.equal(read.forms, { explicit: read.records.length });
    for (const { prompt, chosen, rejected } of read.records) {
      const sum = sumOf(prompt);
      assert.ok(sum !== null, prompt);
      assert.is(chosen, String(sum));
      const miss = Math.abs(Number(rejected) - sum!);
      assert.ok(/^\d+$/.test(rejected) && miss >= 1 && miss <= 3, `${prompt} rejected ${rejected}`);
    }
  }
  const trainPrompts = new Set(train.records.map((record) => record.prompt));
  assert.is(trainPrompts.size, 60);
  assert.is(new Set(held.records.map((record) => record.prompt)).size, 20);
  for (const record of held.records) assert.not.ok(trainPrompts.has(record.prompt), `${record.prompt} is held out`);
  for (const { prompt, completion } of sft.records) assert.is(completion, String(sumOf(prompt)));
});

test.run();
