/**
 * A model's chat template: the Jinja text of its tokenizer_config.json (`chat_template`, a string,
 * or a list of named templates `[{ name, template }]` of which the one named "default" is used),
 * or of a chat_template.jinja beside it (which wins, as in transformers). It is compiled once by
 * @huggingface/jinja, Hugging Face's own Jinja for chat templates (the one transformers.js uses),
 * and rendered as transformers renders it: with `messages`, `add_generation_prompt` and the
 * tokenizer's special tokens as variables (`bos_token`, `eos_token`, `pad_token`, `unk_token`,
 * every other `*_token` of tokenizer_config.json, `additional_special_tokens`, and
 * `extra_special_tokens`' entries). `raise_exception`, `range`, `namespace` and `strftime_now`
 * are @huggingface/jinja's own globals (it refuses a variable of the same name).
 *
 * Every failure names the file the template came from: a template that does not compile is
 * refused when the tokenizer is loaded, one that fails on some messages (a `raise_exception`
 * such as Gemma's "roles must alternate") when they are rendered.
 */
import type * as HfJinja from '@huggingface/jinja' with { 'resolution-mode': 'import' };

import { describe as describeValue, expected } from '../validate';
import { TokenizerError } from '../errors';

// The package ships a CommonJS build (its "require" export) but declares its types as an ES
// module, which TypeScript's node16 resolution will not `import` from CommonJS: the types are
// imported as such and the module is required.
const { Template } = require('@huggingface/jinja') as typeof HfJinja;

/**
 * A message as a chat template reads it: a `role` and a string `content`. Any other fields of the
 * object (`reasoning_content`, `tool_calls`, ...) are passed on to the template as they are.
 */
export interface TemplateMessage {
  readonly role: string;
  readonly content: string;
}

/** Options of `applyChatTemplate`. */
export interface ChatTemplateOptions {
  /**
   * Whether the rendering ends by opening the assistant's turn (`add_generation_prompt`), as the
   * prompt of a generation does; default false (transformers' default).
   */
  addGenerationPrompt?: boolean;
}

/**
 * The messages of an applyChatTemplate call, read once each: an array of objects with a string
 * `role` and a string `content`. Each is copied (its own enumerable fields), so that a getter is
 * read once and the template cannot change the caller's objects.
 */
export function readTemplateMessages(messages: unknown): TemplateMessage[] {
  if (!Array.isArray(messages)) throw new TypeError(expected('an array of messages { role, content }', 'messages', messages));
  return messages.map((message: unknown, index) => {
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      throw new TypeError(expected('a message { role, content }', `messages[${index}]`, message));
    }
    const copy = { ...(message as Record<string, unknown>) };
    if (typeof copy.role !== 'string') throw new TypeError(expected('a string', `messages[${index}].role`, copy.role));
    if (typeof copy.content !== 'string') throw new TypeError(expected('a string', `messages[${index}].content`, copy.content));
    return copy as unknown as TemplateMessage;
  });
}

/** `addGenerationPrompt` of an applyChatTemplate call; a key other than it is refused, so that a misspelling is not ignored. */
export function readTemplateOptions(options: unknown): boolean {
  if (options === undefined) return false;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(expected('an object such as { addGenerationPrompt: true }', 'options', options));
  }
  for (const key of Object.keys(options)) {
    if (key !== 'addGenerationPrompt') throw new TypeError(`Expected only addGenerationPrompt in options but received '${key}', which applyChatTemplate does not take`);
  }
  const value = (options as ChatTemplateOptions).addGenerationPrompt;
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new TypeError(expected('a boolean', 'addGenerationPrompt', value));
  return value;
}

/** transformers' special token attributes (SPECIAL_TOKENS_ATTRIBUTES), less the list additional_special_tokens. */
const SPECIAL_TOKENS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

function isTokenObject(value: unknown): value is { content: string } {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as { content?: unknown }).content === 'string';
}

/**
 * A special token's text as tokenizer_config.json gives it: a string, or an AddedToken object
 * `{ "content": "<s>", "__type": "AddedToken", ... }` (older files); null when it is null or absent.
 */
export function specialTokenText(value: unknown, name: string, source: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (isTokenObject(value)) return value.content;
  throw new TokenizerError(`${source}: ${expected('a token (a string, or an object with a string content)', name, value)}`, { file: source });
}

/**
 * The variables transformers gives a template for the tokenizer's special tokens: every
 * `*_token` key of tokenizer_config.json as its text (null kept as null, as transformers keeps
 * None), `additional_special_tokens` as a list of texts, and the entries of `extra_special_tokens`.
 */
export function specialTokenVariables(config: Record<string, unknown>, source: string): Record<string, unknown> {
  const variables: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (!key.endsWith('_token')) continue;
    // transformers' special tokens must be tokens; other `*_token` keys are taken when they are
    // (Gemma's boi_token), and left when they are something else (add_bos_token is a boolean).
    if (SPECIAL_TOKENS.includes(key)) variables[key] = specialTokenText(value, key, source);
    else if (typeof value === 'string' || isTokenObject(value)) variables[key] = specialTokenText(value, key, source);
  }
  const additional = config.additional_special_tokens;
  if (additional !== undefined && additional !== null) {
    if (!Array.isArray(additional)) throw new TokenizerError(`${source}: ${expected('a list of tokens', 'additional_special_tokens', additional)}`, { file: source });
    variables.additional_special_tokens = additional.map((token, k) => specialTokenText(token, `additional_special_tokens[${k}]`, source));
  }
  const extra = config.extra_special_tokens;
  if (extra !== undefined && extra !== null) {
    if (typeof extra !== 'object' || Array.isArray(extra)) {
      throw new TokenizerError(`${source}: ${expected('an object of name to token', 'extra_special_tokens', extra)}`, { file: source });
    }
    for (const [key, value] of Object.entries(extra)) variables[key] = specialTokenText(value, `extra_special_tokens.${key}`, source);
  }
  return variables;
}

/**
 * The template text of tokenizer_config.json's `chat_template`: a string, or of a list of named
 * templates the one named "default"; null when there is none.
 */
export function configChatTemplate(value: unknown, source: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) {
    throw new TokenizerError(`${source}: ${expected('a template (a string) or a list of { name, template }', 'chat_template', value)}`, { file: source });
  }
  const names: string[] = [];
  for (const [k, entry] of value.entries()) {
    const named = entry as { name?: unknown; template?: unknown } | null;
    if (typeof named !== 'object' || named === null || typeof named.name !== 'string' || typeof named.template !== 'string') {
      throw new TokenizerError(`${source}: ${expected('{ name: string, template: string }', `chat_template[${k}]`, entry)}`, { file: source });
    }
    if (named.name === 'default') return named.template;
    names.push(named.name);
  }
  throw new TokenizerError(`${source}: chat_template is a list of named templates without one named "default" (it has ${names.map((n) => JSON.stringify(n)).join(', ') || 'none'})`, { file: source });
}

/** A compiled chat template and the variables it is rendered with. */
export class ChatTemplate {
  /** The Jinja text. */
  readonly text: string;
  /** The file it came from, named in every error. */
  readonly source: string;
  private readonly compiled: HfJinja.Template;
  private readonly variables: Record<string, unknown>;

  /** Compiles `text`; a template that does not compile is a TokenizerError naming `source`. */
  constructor(text: string, source: string, variables: Record<string, unknown>) {
    this.text = text;
    this.source = source;
    this.variables = variables;
    try {
      this.compiled = new Template(text);
    } catch (error) {
      throw new TokenizerError(`${source}: the chat template does not compile: ${messageOf(error)}`, { cause: error, file: source });
    }
  }

  /** The messages rendered; a failure of the template is a TokenizerError naming its file. */
  render(messages: readonly TemplateMessage[], addGenerationPrompt: boolean): string {
    let rendered: unknown;
    try {
      rendered = this.compiled.render({ ...this.variables, messages, add_generation_prompt: addGenerationPrompt });
    } catch (error) {
      throw new TokenizerError(`${this.source}: the chat template failed: ${messageOf(error)}`, { cause: error, file: this.source });
    }
    if (typeof rendered !== 'string') throw new TokenizerError(`${this.source}: the chat template rendered ${describeValue(rendered)}, not a string`, { file: this.source });
    return rendered;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
