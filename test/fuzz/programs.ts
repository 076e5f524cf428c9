/**
 * The fuzz test's generators (fast-check): programs over every public function, each argument
 * either valid or hostile. Programs start from valid arguments and apply a few mutations, so that
 * they reach deep into the checks rather than stopping at the first: a field replaced by a
 * hostile value (special numbers, wrong types, huge and non-integer sizes), a typed array made
 * over a shared, detached, resizable or offset buffer, lying about its length or buffer, faked
 * or proxied; a getter that answers a valid value first and a hostile one after; a throwing or
 * forgetful Proxy for the whole argument object; an unknown argument; and, for the async form,
 * labels overwritten or the logits' buffer transferred while the job runs. Programs whose
 * arguments stay valid are compared with the float64 reference.
 */
import * as fc from 'fast-check';

import { LOSS_NAMES, REFERENCE_FREE_LOSSES } from '../../lib/losses';
import { LOSS_INPUT_KEYS, LOSS_PARAMETER_KEYS } from '../../lib/losses/parameters';
import type { AfterAction, ArrayVariant, Fill, Program, TensorDTypeName, TypedArrayType, ValueSpec } from './spec';

const num = (v: number | 'NaN' | 'Infinity' | '-Infinity' | '-0'): ValueSpec => ({ k: 'num', v });
const str = (v: string): ValueSpec => ({ k: 'str', v });
const arr = (items: ValueSpec[]): ValueSpec => ({ k: 'arr', items });
const obj = (props: [string, ValueSpec][], proxy?: 'throws' | 'counts'): ValueSpec => ({ k: 'obj', props, ...(proxy ? { proxy } : {}) });
const ta = (type: TypedArrayType, length: number, fill: Fill, vocab = 8, variant: ArrayVariant = 'plain', seed = 1): Extract<ValueSpec, { k: 'ta' }> =>
  ({ k: 'ta', type, length, fill, variant, seed, vocab });
const tensor = (shape: number[], dtype: TensorDTypeName = 'f32', variant: 'live' | 'param' | 'disposed' | 'view' | 'fake' = 'live', fill: Fill = 'random', vocab = 8): ValueSpec =>
  ({ k: 'tensor', shape, dtype, variant, fill, seed: 1, vocab });

/** Numbers a size, an index or a parameter should never be. */
const specialNumber = fc.constantFrom<ValueSpec>(
  num(0), num(-1), num(1.5), num('NaN'), num('Infinity'), num('-Infinity'), num('-0'), num(2 ** 31), num(2 ** 32),
  num(2 ** 53), num(2 ** 53 + 2), num(-(2 ** 31) - 1), num(1e308), num(5e-324), num(Number.MAX_SAFE_INTEGER),
);

/** A value of any type that should be refused where a specific one is expected. */
export const hostileValue: fc.Arbitrary<ValueSpec> = fc.oneof(
  { weight: 4, arbitrary: specialNumber },
  { weight: 1, arbitrary: fc.integer({ min: -1000, max: 1000 }).map((v) => num(v)) },
  { weight: 1, arbitrary: fc.constantFrom<ValueSpec>(str(''), str('3'), str('f32'), str('toString'), str('__proto__'), str('x'.repeat(100))) },
  { weight: 1, arbitrary: fc.constantFrom<ValueSpec>({ k: 'bool', v: true }, { k: 'bool', v: false }, { k: 'null' }, { k: 'undef' }, { k: 'sym' }, { k: 'big' }) },
  { weight: 1, arbitrary: fc.constantFrom<ValueSpec>({ k: 'fn', kind: 'returnsNumber' }, { k: 'sparse', length: 2 ** 32 - 1 }, { k: 'sparse', length: 3 }, obj([]), arr([])) },
  { weight: 1, arbitrary: fc.array(specialNumber, { maxLength: 4 }).map(arr) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constantFrom<TypedArrayType>('Float32Array', 'Float64Array', 'Uint16Array', 'Int32Array', 'Uint8Array'),
      length: fc.constantFrom(0, 1, 3, 7, 64),
      variant: fc.constantFrom<ArrayVariant>('plain', 'shared', 'detached', 'fake', 'proxy', 'lyingLength', 'resizable'),
    }).map(({ type, length, variant }) => ta(type, length, 'random', 8, variant)),
  },
  { weight: 1, arbitrary: fc.constantFrom(tensor([2, 3]), tensor([3], 'i32'), tensor([2], 'f32', 'disposed'), tensor([1], 'f32', 'fake')) },
);

/** A shape that is valid or nearly so: negative, fractional, huge, too long or too short. */
const hostileShape: fc.Arbitrary<ValueSpec> = fc.oneof(
  fc.array(specialNumber, { minLength: 1, maxLength: 4 }).map(arr),
  fc.constantFrom<ValueSpec>(arr([num(2 ** 30), num(2 ** 30)]), arr([num(2), num(-3)]), arr([]), arr([num(2), str('3')]), { k: 'sparse', length: 3 }, str('[2,3]')),
  hostileValue,
);

// ---- preference losses ---------------------------------------------------------------------

interface LossBase {
  pairs: number;
  tokens: number;
  vocab: number;
  dtype: 'f32' | 'bf16' | 'f16';
  loss: (typeof LOSS_NAMES)[number];
  averageLogProb: boolean;
  seed: number;
}

const lossBase: fc.Arbitrary<LossBase> = fc.record({
  pairs: fc.integer({ min: 1, max: 3 }),
  tokens: fc.integer({ min: 1, max: 5 }),
  vocab: fc.integer({ min: 2, max: 37 }),
  dtype: fc.constantFrom('f32' as const, 'bf16' as const, 'f16' as const),
  loss: fc.constantFrom(...LOSS_NAMES),
  averageLogProb: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1000 }),
});

const REFERENCE_FREE = new Set<string>(REFERENCE_FREE_LOSSES);

/** Valid arguments of the typed-array form, as named fields. */
function validLossFields(b: LossBase, withLoss: boolean): [string, ValueSpec][] {
  const rows = 2 * b.pairs;
  const logits = ta(b.dtype === 'f32' ? 'Float32Array' : 'Uint16Array', rows * b.tokens * b.vocab, b.dtype === 'f32' ? 'random' : b.dtype, b.vocab, 'plain', b.seed);
  const fields: [string, ValueSpec][] = [
    ['logits', { k: 'named', name: 'logits', value: logits }],
    ['shape', arr([num(rows), num(b.tokens), num(b.vocab)])],
    ['labels', { k: 'named', name: 'labels', value: ta('Int32Array', rows * b.tokens, 'labels', b.vocab, 'plain', b.seed + 1) }],
  ];
  if (b.dtype !== 'f32') fields.push(['dtype', str(b.dtype)]);
  if (b.averageLogProb) fields.push(['averageLogProb', { k: 'bool', v: true }]);
  if (!withLoss) return fields;
  fields.push(['loss', str(b.loss)]);
  if (!REFERENCE_FREE.has(b.loss)) fields.push(['refLogps', ta('Float32Array', rows, 'random', b.vocab, 'plain', b.seed + 2)]);
  return fields;
}

type Mutation = { fields: [string, ValueSpec][]; keepsValid: boolean; proxy?: 'throws' | 'counts' };

/** One change to the fields: a hostile value, a buffer variant, a getter, an unknown key, ... */
function mutation(b: LossBase): fc.Arbitrary<(m: Mutation) => Mutation> {
  // every argument: the registry's parameters and the loss's per-row inputs included
  const fieldNames = ['logits', 'shape', 'labels', 'dtype', 'ignoreIndex', ...LOSS_PARAMETER_KEYS, ...LOSS_INPUT_KEYS, 'grad', 'inPlace', 'out',
    'allowNonFinite', 'implementation'];
  const replace = (name: string, value: ValueSpec, keepsValid = false) => (m: Mutation): Mutation => ({
    ...m, keepsValid: m.keepsValid && keepsValid, fields: [...m.fields.filter(([n]) => n !== name), [name, value]],
  });
  const variantOf = (name: 'logits' | 'labels', variant: ArrayVariant) => (m: Mutation): Mutation => ({
    ...m,
    keepsValid: m.keepsValid && ['offset', 'shared', 'lyingLength', 'lyingBuffer'].includes(variant),
    fields: m.fields.map(([n, v]): [string, ValueSpec] => {
      if (n !== name) return [n, v];
      const inner = v.k === 'named' ? v.value : v;
      if (inner.k !== 'ta') return [n, v];
      const changed = { ...inner, variant };
      return [n, v.k === 'named' ? { ...v, value: changed } : changed];
    }),
  });
  const rows = 2 * b.pairs;
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...fieldNames), hostileValue).map(([name, value]) => replace(name, value)) },
    { weight: 2, arbitrary: hostileShape.map((value) => replace('shape', value)) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom<'logits' | 'labels'>('logits', 'labels'), fc.constantFrom<ArrayVariant>('offset', 'shared', 'detached', 'resizable', 'lyingLength', 'lyingBuffer', 'fake', 'proxy')).map(([name, variant]) => variantOf(name, variant)) },
    { weight: 2, arbitrary: fc.constantFrom(-1, 1).map((d) => replace('labels', ta('Int32Array', rows * b.tokens + d, 'labels', b.vocab))) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 1000 }).map((seed) => replace('labels', ta('Int32Array', rows * b.tokens, 'badLabel', b.vocab, 'plain', seed))) },
    { weight: 1, arbitrary: fc.constant(replace('logits', ta(b.dtype === 'f32' ? 'Float32Array' : 'Uint16Array', rows * b.tokens * b.vocab, 'nan', b.vocab))) },
    { weight: 1, arbitrary: fc.constant(replace('refLogps', ta('Float32Array', rows, 'huge', b.vocab))) },
    { weight: 1, arbitrary: fc.constant(replace('logits', ta('Float32Array', rows * b.tokens * b.vocab, 'huge', b.vocab))) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...fieldNames), hostileValue).map(([name, value]) => (m: Mutation): Mutation => {
      const current = m.fields.find(([n]) => n === name)?.[1] ?? { k: 'undef' };
      return replace(name, { k: 'getter', first: current, then: value })(m);
    }) },
    { weight: 1, arbitrary: fc.constantFrom('lables', 'temperature', '__proto__', 'constructor').map((name) => replace(name, num(1))) },
    { weight: 1, arbitrary: fc.constantFrom<'throws' | 'counts'>('throws', 'counts').map((proxy) => (m: Mutation): Mutation => ({ ...m, keepsValid: false, proxy })) },
    { weight: 1, arbitrary: fc.constant(replace('out', { k: 'ref', name: 'logits' })) },
    { weight: 1, arbitrary: fc.constant(replace('inPlace', { k: 'bool', v: true }, true)) },
    { weight: 1, arbitrary: fc.constant(replace('implementation', str('reference'), true)) },
    // valid uses of the round-2 inputs: several references, exo's rewards
    ...(REFERENCE_FREE.has(b.loss) ? [] : [{ weight: 1, arbitrary: fc.integer({ min: 1, max: 1000 }).map((seed) => replace('refLogps',
      arr([ta('Float32Array', rows, 'random', b.vocab, 'plain', seed), ta('Float32Array', rows, 'random', b.vocab, 'plain', seed + 1)]), true)) }]),
    ...(b.loss === 'exo' ? [{ weight: 1, arbitrary: fc.integer({ min: 1, max: 1000 }).map((seed) => replace('rewards',
      ta('Float32Array', rows, 'random', b.vocab, 'plain', seed), true)) }] : []),
  );
}

function lossProgram(call: 'preferenceLoss' | 'preferenceLossAsync' | 'sequenceLogps'): fc.Arbitrary<Omit<Program, 'id'>> {
  return lossBase.chain((b) => fc.tuple(
    fc.constant(b),
    fc.array(mutation(b), { maxLength: 3 }),
    fc.boolean(),
    call === 'preferenceLossAsync'
      ? fc.subarray<AfterAction>(['overwriteLabels', 'transferLogits', 'collectGarbage'])
      : fc.constant<AfterAction[]>([]),
    fc.integer({ min: 0, max: 30 }),
  )).map(([b, mutations, mutate, afterActions, wholeArgs]) => {
    let m: Mutation = { fields: validLossFields(b, call !== 'sequenceLogps'), keepsValid: true };
    if (mutate) for (const change of mutations) m = change(m);
    if (call === 'sequenceLogps') m.fields = m.fields.filter(([n]) => !['loss', 'refLogps'].includes(n)) as [string, ValueSpec][];
    const args: ValueSpec = wholeArgs === 0 ? hostileValueSample(b.seed) : obj(m.fields, m.proxy);
    const valid = m.keepsValid && wholeArgs !== 0;
    return {
      family: `${call}${valid ? ' (valid)' : ''}`,
      call,
      args: [args],
      after: afterActions,
      ...(valid ? { reference: call === 'sequenceLogps' ? 'sequenceLogps' as const : 'preferenceLoss' as const } : {}),
    };
  });
}

/** A whole argument object replaced by something that is not one. */
function hostileValueSample(seed: number): ValueSpec {
  const choices: ValueSpec[] = [{ k: 'null' }, { k: 'undef' }, num(3), str('args'), arr([]), { k: 'fn', kind: 'returnsNumber' }, ta('Float32Array', 4, 'random')];
  return choices[seed % choices.length];
}

/** The Tensor forms: logits as a tensor (live, a parameter, disposed, a view, fake), labels as a tensor or array. */
const tensorLossProgram: fc.Arbitrary<Omit<Program, 'id'>> = lossBase.chain((b) => fc.record({
  b: fc.constant(b),
  variant: fc.constantFrom('param' as const, 'param' as const, 'live' as const, 'disposed' as const, 'view' as const, 'fake' as const),
  labelsAsTensor: fc.boolean(),
  extra: fc.constantFrom<[string, ValueSpec] | null>(null, null, ['grad', { k: 'bool', v: false }], ['out', ta('Float32Array', 4, 'random')], ['inPlace', { k: 'bool', v: true }],
    ['shape', arr([num(2 * b.pairs), num(b.tokens), num(b.vocab)])], ['shape', arr([num(1), num(2), num(3)])], ['dtype', str('f32')], ['labels', hostileValueSample(b.seed)]),
  async: fc.boolean(),
  after: fc.constantFrom<AfterAction[]>(['backward'], ['backward'], ['backwardTwice'], [], ['disposeLogits'], ['disposeLogits', 'backward']),
})).map(({ b, variant, labelsAsTensor, extra, async, after }) => {
  const rows = 2 * b.pairs;
  const fields: [string, ValueSpec][] = [
    ['logits', tensor([rows, b.tokens, b.vocab], b.dtype, variant)],
    ['labels', labelsAsTensor ? { k: 'tensor', shape: [rows, b.tokens], dtype: 'i32', variant: 'live', fill: 'ints', seed: b.seed, vocab: b.vocab } : ta('Int32Array', rows * b.tokens, 'labels', b.vocab, 'plain', b.seed)],
    ['loss', str(b.loss)],
  ];
  if (!REFERENCE_FREE.has(b.loss)) fields.push(['refLogps', ta('Float32Array', rows, 'random', b.vocab, 'plain', b.seed + 2)]);
  if (extra) fields.push(extra);
  const valid = variant === 'param' && extra === null && !async && after.length === 1 && after[0] === 'backward';
  return {
    family: `tensor ${async ? 'preferenceLossAsync' : 'preferenceLoss'}${valid ? ' (valid)' : ''}`,
    call: async ? 'preferenceLossAsync' : 'preferenceLoss',
    args: [obj(fields)],
    after: async ? after.filter((a) => a === 'disposeLogits' || a === 'collectGarbage') : after,
    ...(valid ? { reference: 'preferenceLossGrad' as const } : {}),
  };
});

// ---- tensors, ops, conversions -------------------------------------------------------------

const smallShape = fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 });
const dtypeName = fc.constantFrom<TensorDTypeName>('f32', 'f32', 'bf16', 'f16', 'i32');
const tensorSpec: fc.Arbitrary<ValueSpec> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(smallShape, fc.constantFrom<'live' | 'param'>('live', 'param')).map(([shape, variant]) => tensor(shape, 'f32', variant)) },
  { weight: 2, arbitrary: fc.tuple(smallShape, dtypeName, fc.constantFrom<'live' | 'param' | 'disposed' | 'view' | 'fake'>('live', 'disposed', 'view', 'fake')).map(([shape, dtype, variant]) => tensor(shape, dtype, variant)) },
  { weight: 1, arbitrary: hostileValue },
);

/** A real tensor (the receiver of a method): live, a parameter, disposed or a view, of any dtype. */
const realTensorSpec: fc.Arbitrary<ValueSpec> = fc.tuple(smallShape, dtypeName, fc.constantFrom<'live' | 'param' | 'disposed' | 'view'>('live', 'param', 'param', 'disposed', 'view'))
  .map(([shape, dtype, variant]) => tensor(shape, dtype, variant));

const tensorProgram: fc.Arbitrary<Omit<Program, 'id'>> = fc.oneof(
  fc.tuple(fc.oneof(hostileValue, fc.array(fc.integer({ min: -3, max: 70000 }).map((v) => num(v)), { maxLength: 7 }).map(arr), fc.constantFrom(ta('Float32Array', 6, 'random'), ta('Int32Array', 6, 'ints'), ta('Uint16Array', 6, 'bf16'), ta('Float32Array', 6, 'random', 8, 'shared'), ta('Float32Array', 6, 'random', 8, 'detached'))),
    fc.oneof(fc.constantFrom(arr([num(6)]), arr([num(2), num(3)]), arr([num(3)])), hostileShape), fc.oneof(fc.constantFrom<ValueSpec>({ k: 'undef' }, str('f32'), str('i32'), str('bf16')), hostileValue), fc.constantFrom<ValueSpec>({ k: 'undef' }, str('cpu'), str('gpu'), num(0)))
    .map((args) => ({ family: 'Tensor.from', call: 'Tensor.from', args, after: [] })),
  fc.tuple(fc.oneof(smallShape.map((s) => arr(s.map((d) => num(d)))), hostileShape), fc.oneof(fc.constantFrom<ValueSpec>({ k: 'undef' }, str('i32')), hostileValue))
    .map((args) => ({ family: 'Tensor.zeros', call: 'Tensor.zeros', args, after: [] })),
  fc.tuple(fc.constantFrom('tensor.reshape', 'tensor.to', 'tensor.item', 'tensor.toArray', 'tensor.backward', 'tensor.dispose', 'tensor.grad=', 'tensor.requiresGrad=', 'tensor.shape=', 'tensor.size='), realTensorSpec, fc.oneof(tensorSpec, hostileShape, hostileValue))
    .map(([call, t, value]) => ({ family: call, call, args: [t, value], after: [] })),
  fc.tuple(fc.constantFrom('toBf16', 'toF16', 'fromBf16', 'fromF16'), fc.oneof(hostileValue, fc.array(fc.oneof(fc.integer({ min: -5, max: 70000 }).map((v) => num(v)), specialNumber), { maxLength: 5 }).map(arr)))
    .map(([call, value]) => ({ family: call, call, args: [value], after: [] })),
);

/** Arguments for an op: matching shapes most of the time, a hostile one sometimes. */
function opArgs(name: string, B: number, T: number, C: number, heads: number, hostile: ValueSpec | null, at: number): ValueSpec[] {
  const p = (shape: number[]) => tensor(shape, 'f32', 'param');
  const vocab = 5;
  let args: ValueSpec[];
  switch (name) {
    case 'add': case 'mul': args = [p([B, T, C]), p([T, C])]; break;
    case 'scale': args = [p([B, C]), num(0.5)]; break;
    case 'sum': case 'mean': case 'gelu': case 'softmax': args = [p([B, T, C])]; break;
    case 'matmul': args = [p([B, T, C]), p([C, heads])]; break;
    case 'linear': args = [p([B, C]), p([heads, C]), p([heads])]; break;
    case 'embedding': args = [p([vocab, C]), ta('Int32Array', B * T, 'ints', vocab)]; break;
    case 'layerNorm': args = [p([B, C]), p([C]), p([C])]; break;
    case 'causalSelfAttention': args = [p([B, T, 3 * C * heads]), num(heads)]; break;
    case 'crossEntropy': args = [p([B, T, vocab]), ta('Int32Array', B * T, 'labels', vocab)]; break;
    default: args = [];
  }
  if (hostile) args[at % Math.max(1, args.length + 1)] = hostile;
  return args;
}

const opProgram: fc.Arbitrary<Omit<Program, 'id'>> = fc.record({
  name: fc.constantFrom('add', 'mul', 'scale', 'sum', 'mean', 'matmul', 'linear', 'embedding', 'layerNorm', 'gelu', 'softmax', 'causalSelfAttention', 'crossEntropy'),
  B: fc.integer({ min: 1, max: 3 }),
  T: fc.integer({ min: 1, max: 4 }),
  C: fc.integer({ min: 1, max: 5 }),
  heads: fc.integer({ min: 1, max: 3 }),
  hostile: fc.option(fc.oneof(hostileValue, tensorSpec), { freq: 2 }),
  at: fc.nat(3),
  backward: fc.boolean(),
}).map(({ name, B, T, C, heads, hostile, at, backward }) => ({
  family: `F.${name}`,
  call: `F.${name}${backward ? '+backward' : ''}`,
  args: opArgs(name, B, T, C, heads, hostile, at),
  after: [],
}));

// ---- modules, optimizer, scopes, files, the rest ----------------------------------------------

const configSpec: fc.Arbitrary<ValueSpec> = fc.record({
  layers: fc.oneof(fc.constant(num(1)), specialNumber),
  width: fc.oneof(fc.constant(num(8)), specialNumber),
  heads: fc.oneof(fc.constant(num(2)), fc.constant(num(3)), specialNumber),
  context: fc.oneof(fc.constant(num(4)), specialNumber),
  vocab: fc.oneof(fc.constant(num(11)), specialNumber),
  extra: fc.boolean(),
}).map(({ extra, ...c }) => obj([...Object.entries(c), ...(extra ? [['dropout', num(0.1)] as [string, ValueSpec]] : [])]));

const moduleProgram: fc.Arbitrary<Omit<Program, 'id'>> = fc.oneof(
  fc.tuple(fc.oneof(configSpec, hostileValue), fc.oneof(fc.constantFrom<ValueSpec>({ k: 'undef' }, obj([['seed', num(7)]])), fc.tuple(fc.oneof(specialNumber, hostileValue)).map(([s]) => obj([['seed', s]]))))
    .map((args) => ({ family: 'new GPT', call: 'new GPT', args, after: [] })),
  fc.tuple(fc.oneof(fc.constantFrom(ta('Int32Array', 12, 'ints', 11), ta('Int32Array', 12, 'ints', 40), ta('Int32Array', 12, 'ints', 11, 'shared')), hostileValue),
    fc.oneof(fc.constantFrom(arr([num(2), num(6)]), arr([num(3), num(4)]), arr([num(1), num(12)])), hostileShape))
    .map((args) => ({ family: 'gpt.forward', call: 'gpt.forward', args, after: [] })),
  fc.tuple(fc.constantFrom('new Linear', 'new Embedding', 'new LayerNorm'), fc.oneof(fc.constant(num(3)), specialNumber, hostileValue), fc.oneof(fc.constant(num(2)), specialNumber, hostileValue), fc.oneof(fc.constantFrom<ValueSpec>({ k: 'undef' }, obj([['bias', { k: 'bool', v: false }]])), hostileValue))
    .map(([call, ...args]) => ({ family: call, call, args, after: [] })),
  fc.tuple(fc.constantFrom('module', 'list', 'pairs', 'duplicate', 'view', 'notTensor', 'i32', 'disposed', 'empty') as fc.Arbitrary<Extract<ValueSpec, { k: 'params' }>['kind']>,
    fc.oneof(fc.constantFrom<ValueSpec>({ k: 'undef' }, obj([['lr', num(1e-3)]]), obj([['betas', arr([num(0.9), num(0.999)])]]), obj([['betas', arr([num(0.9)])]]), obj([['decays', num(1)]]), obj([['momentum', num(0.9)]])),
      fc.tuple(fc.constantFrom('lr', 'eps', 'weightDecay', 'betas'), hostileValue).map(([key, value]) => obj([[key, value]]))))
    .map(([kind, options]) => ({ family: 'new AdamW', call: 'new AdamW', args: [{ k: 'params', kind } as ValueSpec, options], after: [] })),
  fc.tuple(fc.constantFrom('module', 'list', 'pairs', 'duplicate', 'notTensor', 'empty') as fc.Arbitrary<Extract<ValueSpec, { k: 'params' }>['kind']>, fc.oneof(fc.constant(num(1)), specialNumber))
    .map(([kind, maxNorm]) => ({ family: 'clipGradNorm', call: 'clipGradNorm', args: [{ k: 'params', kind } as ValueSpec, maxNorm], after: [] })),
  fc.tuple(fc.oneof(fc.constant(num(3)), specialNumber), fc.oneof(fc.constant(obj([['maxLr', num(1e-3)], ['totalSteps', num(10)], ['warmupSteps', num(2)]])), fc.tuple(fc.constantFrom('maxLr', 'minLr', 'warmupSteps', 'totalSteps'), hostileValue).map(([k, v]) => obj([['maxLr', num(1e-3)], ['totalSteps', num(10)], [k, v]]))))
    .map((args) => ({ family: 'cosineSchedule', call: 'cosineSchedule', args, after: [] })),
  fc.oneof(specialNumber, hostileValue, fc.constant(num(42))).map((seed) => ({ family: 'normalRandom', call: 'normalRandom', args: [seed], after: [] })),
  fc.oneof(specialNumber, hostileValue, fc.constant(num(1))).map((n) => ({ family: 'setThreads', call: 'setThreads', args: [n], after: [] })),
);

const scopeProgram: fc.Arbitrary<Omit<Program, 'id'>> = fc.oneof(
  fc.tuple(fc.constantFrom('withScope', 'noGrad'), fc.oneof(fc.constantFrom<ValueSpec>({ k: 'fn', kind: 'returnsTensor' }, { k: 'fn', kind: 'throws' }, { k: 'fn', kind: 'returnsPromise' }, { k: 'fn', kind: 'returnsNested' }), hostileValue))
    .map(([call, value]) => ({ family: call, call, args: [value], after: [] })),
  tensorSpec.map((t) => ({ family: 'keep', call: 'keep', args: [t], after: [] })),
  fc.constantFrom('hostEmptyCache', 'cudaAvailable', 'cudaMemory', 'doctorReport').map((call) => ({ family: call, call, args: [], after: [] })),
);

const fileKinds = fc.constantFrom('devZero', 'fifo', 'directory', 'missing', 'valid', 'validBytes', 'truncated', 'randomBytes', 'headerPastEnd', 'prototypeDtype', 'prototypeNames', 'hugeOffsets', 'badMetadata') as fc.Arbitrary<Extract<ValueSpec, { k: 'file' }>['kind']>;

const namedTensor: fc.Arbitrary<ValueSpec> = fc.tuple(fc.constantFrom('w', 'constructor', '__proto__', '', '__metadata__', 'toString'), fc.oneof(
  fc.constant(obj([['shape', arr([num(2), num(2)])], ['data', ta('Float32Array', 4, 'random')]])),
  fc.constant(obj([['shape', arr([num(2), num(2)])], ['data', ta('Float32Array', 3, 'random')]])),
  fc.constant(obj([['shape', arr([num(-1)])], ['data', ta('Float32Array', 4, 'random')]])),
  fc.constant(obj([['shape', arr([num(4)])], ['data', ta('Float64Array', 4, 'random')]])),
  tensorSpec,
)).map(([name, value]) => arr([str(name), value]));

const fileProgram: fc.Arbitrary<Omit<Program, 'id'>> = fc.oneof(
  fc.tuple(fc.constantFrom('readSafetensors', 'loadSafetensors'), fc.oneof({ weight: 4, arbitrary: fileKinds.map((kind) => ({ k: 'file', kind, seed: 1 }) as ValueSpec) }, { weight: 1, arbitrary: hostileValue }))
    .map(([call, file]) => ({ family: call, call, args: [file], after: [] })),
  fc.tuple(fc.constantFrom('encodeSafetensors', 'saveSafetensors'), fc.oneof(fc.array(namedTensor, { maxLength: 3 }).map(arr), hostileValue, fc.constant<ValueSpec>({ k: 'params', kind: 'module' })),
    fc.oneof(fc.constantFrom<ValueSpec>({ k: 'undef' }, obj([['a', str('b')]]), obj([['a', num(1)]]), obj([['__proto__', str('x')]])), hostileValue))
    .map(([call, list, metadata]) => ({ family: call, call, args: [list, metadata], after: [] })),
);

/** Every program family, weighted towards the losses (the package's heart). */
export const programArbitrary: fc.Arbitrary<Omit<Program, 'id'>> = fc.oneof(
  { weight: 6, arbitrary: lossProgram('preferenceLoss') },
  { weight: 3, arbitrary: lossProgram('preferenceLossAsync') },
  { weight: 2, arbitrary: lossProgram('sequenceLogps') },
  { weight: 3, arbitrary: tensorLossProgram },
  { weight: 3, arbitrary: tensorProgram },
  { weight: 4, arbitrary: opProgram },
  { weight: 3, arbitrary: moduleProgram },
  { weight: 1, arbitrary: scopeProgram },
  { weight: 2, arbitrary: fileProgram },
);

/** `count` programs from `seed`: the same list on every machine. */
export function samplePrograms(seed: number, count: number, firstId = 0): Program[] {
  return fc.sample(programArbitrary, { seed, numRuns: count }).map((p, i) => ({ id: firstId + i, ...p }));
}
