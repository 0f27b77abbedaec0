// The JSON part of an envelope (envelope.ts): its schema for requests and results (ajv), checked
// before anything is read from it, and a nesting bound checked before it is parsed.
import { Ajv, type ValidateFunction } from 'ajv';
import { DTYPES, EnvelopeError } from './blobs.js';

/** Nesting allowed in the JSON part (a saved value nested this deep is refused). */
export const MAX_DEPTH = 48;

const int = (min: number, max: number) => ({ type: 'integer', minimum: min, maximum: max });
const blobRef = int(0, 1 << 20);
/**
 * A value: null, a boolean, a finite number, {f: 'NaN' | 'Infinity' | '-Infinity' | '-0'}, {s: a
 * string}, {t: a tensor blob}, or an array of values.
 */
const valueSchema = {
  $id: 'value',
  anyOf: [
    { type: ['null', 'boolean', 'number'] },
    { type: 'array', maxItems: 1 << 20, items: { $ref: 'value' } },
    { type: 'object', additionalProperties: false, required: ['t'], properties: { t: blobRef } },
    { type: 'object', additionalProperties: false, required: ['s'], properties: { s: { type: 'string', maxLength: 1 << 20 } } },
    { type: 'object', additionalProperties: false, required: ['f'], properties: { f: { enum: ['NaN', 'Infinity', '-Infinity', '-0'] } } },
  ],
};
const blobsSchema = {
  type: 'array',
  maxItems: 1 << 20,
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['dtype', 'shape'],
    properties: { dtype: { enum: DTYPES }, shape: { type: 'array', maxItems: 16, items: int(0, 2 ** 40) } },
  },
};
const requestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'request', 'graph', 'traces', 'blobs'],
  properties: {
    kind: { const: 'request' },
    request: { enum: ['trace', 'session', 'generate'] },
    graph: {
      type: 'object',
      additionalProperties: false,
      required: ['code', 'strings', 'tensors'],
      properties: {
        code: blobRef,
        strings: { type: 'array', maxItems: 1 << 20, items: { type: 'string', maxLength: 1 << 16 } },
        tensors: { type: 'array', maxItems: 1 << 20, items: blobRef },
      },
    },
    traces: {
      type: 'array',
      minItems: 1,
      maxItems: 4096,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['batch', 'seq', 'ids', 'mask', 'pos', 'invokes', 'begin', 'end', 'stop'],
        properties: {
          batch: int(1, 1 << 16),
          seq: int(1, 1 << 20),
          ids: blobRef,
          mask: blobRef,
          pos: blobRef,
          invokes: { type: 'array', maxItems: 4096, items: { type: 'array', minItems: 2, maxItems: 2, items: int(0, 1 << 16) } },
          begin: int(0, 1 << 20),
          end: int(0, 1 << 20),
          stop: { type: 'boolean' },
        },
      },
    },
    generate: {
      type: 'object',
      additionalProperties: false,
      required: ['maxNewTokens', 'temperature', 'topK', 'topP', 'seed', 'stopIds', 'stopStrings', 'useCache'],
      properties: {
        maxNewTokens: int(0, 1 << 20),
        temperature: { type: 'number', minimum: 0 },
        topK: int(0, 1 << 30),
        topP: { type: 'number', minimum: 0, maximum: 1 },
        seed: int(0, Number.MAX_SAFE_INTEGER),
        stopIds: { type: 'array', maxItems: 4096, items: int(0, 2 ** 31) },
        stopStrings: { type: 'array', maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 4096 } },
        useCache: { type: 'boolean' },
      },
    },
    blobs: blobsSchema,
  },
};
const resultSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'saved', 'blobs'],
  properties: {
    kind: { const: 'result' },
    saved: { type: 'array', maxItems: 1 << 20, items: { type: 'array', minItems: 2, maxItems: 2, items: [int(0, 1 << 20), { $ref: 'value' }] } },
    generate: {
      type: 'object',
      additionalProperties: false,
      required: ['tokens', 'steps', 'usedCache'],
      properties: {
        tokens: { type: 'array', maxItems: 1 << 16, items: { type: 'array', maxItems: 1 << 20, items: int(-1, 2 ** 31) } },
        steps: int(0, 1 << 20),
        usedCache: { type: 'boolean' },
      },
    },
    blobs: blobsSchema,
  },
};

/** The JSON schemas of the envelope's JSON part (requests and results), for documentation and other implementations. */
export const ENVELOPE_SCHEMAS = { value: valueSchema, request: requestSchema, result: resultSchema } as const;

// strictTuples off: `saved` items are [id, value] pairs given as a tuple
const ajv = new Ajv({ allErrors: false, strictTuples: false, allowUnionTypes: true });
ajv.addSchema(valueSchema);
export const checkRequest = ajv.compile(requestSchema);
export const checkResult = ajv.compile(resultSchema);

export function schemaError(check: ValidateFunction): EnvelopeError {
  const e = check.errors?.[0];
  return new EnvelopeError(`envelope: ${e ? `${e.instancePath || 'the JSON part'} ${e.message}` : 'does not match its schema'}`);
}

/** Refuses JSON nested deeper than MAX_DEPTH before parsing it (validators recurse). */
export function checkDepth(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) throw new EnvelopeError(`envelope: the JSON part is nested more than ${MAX_DEPTH} deep`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

