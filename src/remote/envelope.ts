// The wire format of a remote request and its result: one versioned envelope, a JSON part plus
// a binary section of raw tensor bytes, the same whatever carries it (HTTP today, a job queue
// tomorrow). A request is what the tracer hands the native entry (the packed graph, the traces'
// token ids, masks and positions) plus its kind and generation options; a result is what the
// native run returns (saved values: tensors, numbers, nested lists). Tensors and typed arrays
// travel as raw little-endian bytes, never as JSON numbers. Decoding is strict: the JSON part is
// checked against a schema, every blob's size against its shape, and any malformed input is an
// EnvelopeError, never a crash.
//
// Layout (little-endian):
//   0  'TSWE'            magic
//   4  u16 version       ENVELOPE_VERSION
//   6  u16 flags         bit 0: the rest is gzip-compressed
//   8  u32 json bytes    of the JSON part (uncompressed)
//   12 u32 binary bytes  of the binary section (uncompressed)
//   16 JSON part (UTF-8), then the binary section: blobs in the order the JSON's `blobs` lists
//      them, each padded to a multiple of 8 bytes
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { Ajv, type ValidateFunction } from 'ajv';
import { native, type NativeTensor, type PackedGraph, type WireTrace } from '../native.js';

export const ENVELOPE_VERSION = 1;
export const ENVELOPE_CONTENT_TYPE = 'application/x-torchsight';
const MAGIC = [0x54, 0x53, 0x57, 0x45]; // 'TSWE'
const HEADER = 16;
const FLAG_GZIP = 1;
/** Nesting allowed in the JSON part (a saved value nested this deep is refused). */
const MAX_DEPTH = 48;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** A malformed or oversized envelope: `status` is the HTTP status that fits (400 or 413). */
export class EnvelopeError extends Error {
  readonly code: string;
  constructor(
    message: string,
    readonly status: 400 | 413 = 400,
  ) {
    super(message);
    this.name = 'EnvelopeError';
    this.code = status === 413 ? 'too_large' : 'bad_envelope';
  }
}

export type RequestKind = 'trace' | 'session' | 'generate';

/** Generation options as they cross the wire (stop strings are checked where the tokens are made). */
export interface WireGenOptions {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stopIds: number[];
  stopStrings: string[];
  useCache: boolean;
}

/** What a remote request carries: the native request of a trace, session or generation. */
export interface WireRequest {
  kind: RequestKind;
  traces: WireTrace[];
  graph: PackedGraph;
  generate?: WireGenOptions;
}

/** A decoded request: its tensors are native (made on `device`); dispose() frees them now. */
export interface DecodedRequest extends WireRequest {
  /** bytes of tensor data it carried */
  tensorBytes: number;
  dispose(): void;
}

/** What a run returns: saved values flat ([node id, value, ...], RunResult.saved), and for a generation its tokens. */
export interface WireResult {
  saved: unknown[];
  generate?: { tokens: number[][]; steps: number; usedCache: boolean };
}

export interface DecodedResult extends WireResult {
  dispose(): void;
}

export interface EncodeOptions {
  /** gzip the envelope past this many bytes (default 64 KiB; Infinity never, 0 always) */
  compressAbove?: number;
}

export interface DecodeOptions {
  /** refuse an envelope whose parts (uncompressed) exceed this many bytes (default 1 GiB) */
  maxBytes?: number;
  /** device the tensors are made on (default 'cpu') */
  device?: string;
}

// ---- blobs: typed arrays and tensors as raw bytes ------------------------------------------

const DTYPES = ['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'] as const;
type Dtype = (typeof DTYPES)[number];
type Raw = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/** The typed array a dtype's bytes travel as (float16/bfloat16 widen to float32, exactly; bool as uint8). */
const RAW: Record<Dtype, { new (b: ArrayBuffer): Raw; BYTES_PER_ELEMENT: number }> = {
  float32: Float32Array,
  float16: Float32Array,
  bfloat16: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  int16: Int16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

interface BlobSpec {
  dtype: Dtype;
  shape: number[];
}

/** Collects blobs while a JSON part is built. */
class BlobWriter {
  readonly specs: BlobSpec[] = [];
  readonly parts: Uint8Array[] = [];
  bytes = 0;

  add(dtype: Dtype, shape: number[], data: ArrayBufferView): number {
    this.specs.push({ dtype, shape });
    const u8 = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.parts.push(u8);
    this.bytes += pad8(u8.byteLength);
    return this.specs.length - 1;
  }

  typed(a: Int32Array | BigInt64Array | Float64Array): number {
    const dtype: Dtype = a instanceof Int32Array ? 'int32' : a instanceof BigInt64Array ? 'int64' : 'float64';
    return this.add(dtype, [a.length], a);
  }

  tensor(h: NativeTensor, what: string): number {
    const addon = native();
    let dtype: string, shape: number[], data: Raw;
    try {
      dtype = addon.tensorDtype(h);
      shape = addon.tensorShape(h);
      data = addon.tensorData(h);
    } catch (e) {
      throw new EnvelopeError(`${what}: ${(e as Error).message}`);
    }
    if (!(DTYPES as readonly string[]).includes(dtype)) throw new EnvelopeError(`${what}: dtype ${dtype} cannot be sent`);
    return this.add(dtype as Dtype, shape, data);
  }
}

const pad8 = (n: number) => (n + 7) & ~7;

/** Reads blobs back: each a copy into its own aligned buffer. */
class BlobReader {
  readonly offsets: number[] = [];
  readonly made: NativeTensor[] = [];
  tensorBytes = 0;

  constructor(
    readonly specs: BlobSpec[],
    readonly bin: Uint8Array,
    readonly device: string,
  ) {
    let at = 0;
    for (let i = 0; i < specs.length; i++) {
      const { dtype, shape } = specs[i];
      let n = 1;
      for (const d of shape) n *= d;
      const bytes = n * RAW[dtype].BYTES_PER_ELEMENT;
      if (!Number.isSafeInteger(bytes) || at + bytes > bin.byteLength)
        throw new EnvelopeError(`blob ${i} (${dtype} [${shape.join(', ')}]) needs ${bytes} bytes; the binary section ends at ${bin.byteLength}`);
      this.offsets.push(at);
      at += pad8(bytes);
    }
    if (at !== bin.byteLength) throw new EnvelopeError(`the binary section holds ${bin.byteLength} bytes; its blobs take ${at}`);
  }

  raw(i: number, what: string): Raw {
    const spec = this.specs[i];
    if (spec === undefined) throw new EnvelopeError(`${what}: blob ${i} does not exist`);
    const C = RAW[spec.dtype];
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const buf = new ArrayBuffer(n * C.BYTES_PER_ELEMENT);
    new Uint8Array(buf).set(this.bin.subarray(this.offsets[i], this.offsets[i] + buf.byteLength));
    return new C(buf);
  }

  /** A 1-d typed array of one of `kinds`. */
  typed<K extends Dtype>(i: number, kinds: readonly K[], what: string): Raw {
    const spec = this.specs[i];
    if (spec === undefined) throw new EnvelopeError(`${what}: blob ${i} does not exist`);
    if (!(kinds as readonly string[]).includes(spec.dtype) || spec.shape.length !== 1)
      throw new EnvelopeError(`${what}: expected a 1-d ${kinds.join(' or ')} blob, got ${spec.dtype} [${spec.shape.join(', ')}]`);
    return this.raw(i, what);
  }

  tensor(i: number, what: string): NativeTensor {
    const data = this.raw(i, what);
    const spec = this.specs[i];
    let h: NativeTensor;
    try {
      h = native().tensorFrom(data, spec.shape, spec.dtype, this.device);
    } catch (e) {
      throw new EnvelopeError(`${what}: ${(e as Error).message}`);
    }
    this.made.push(h);
    this.tensorBytes += data.byteLength;
    return h;
  }

  disposeAll(): void {
    for (const h of this.made) native().tensorDispose(h);
  }
}

// ---- the JSON part's schema -----------------------------------------------------------------

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
const checkRequest = ajv.compile(requestSchema);
const checkResult = ajv.compile(resultSchema);

function schemaError(check: ValidateFunction): EnvelopeError {
  const e = check.errors?.[0];
  return new EnvelopeError(`envelope: ${e ? `${e.instancePath || 'the JSON part'} ${e.message}` : 'does not match its schema'}`);
}

/** Refuses JSON nested deeper than MAX_DEPTH before parsing it (validators recurse). */
function checkDepth(text: string): void {
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

// ---- framing --------------------------------------------------------------------------------

async function frame(json: object, blobs: BlobWriter, options: EncodeOptions): Promise<Uint8Array> {
  const text = Buffer.from(JSON.stringify(json), 'utf8');
  const body = Buffer.alloc(text.byteLength + blobs.bytes);
  text.copy(body, 0);
  let at = text.byteLength;
  for (const p of blobs.parts) {
    body.set(p, at);
    at += pad8(p.byteLength);
  }
  if (text.byteLength > 0xffffffff || blobs.bytes > 0xffffffff) throw new EnvelopeError('envelope: larger than 4 GiB', 413);
  const compress = body.byteLength > (options.compressAbove ?? 64 * 1024);
  const payload = compress ? await gzipAsync(body, { level: 1 }) : body;
  const out = Buffer.alloc(HEADER + payload.byteLength);
  out.set(MAGIC, 0);
  out.writeUInt16LE(ENVELOPE_VERSION, 4);
  out.writeUInt16LE(compress ? FLAG_GZIP : 0, 6);
  out.writeUInt32LE(text.byteLength, 8);
  out.writeUInt32LE(blobs.bytes, 12);
  out.set(payload, HEADER);
  return out;
}

async function unframe(bytes: Uint8Array, options: DecodeOptions): Promise<{ json: unknown; bin: Uint8Array }> {
  if (!(bytes instanceof Uint8Array)) throw new EnvelopeError('envelope: expected bytes');
  if (bytes.byteLength < HEADER || MAGIC.some((b, i) => bytes[i] !== b)) throw new EnvelopeError('envelope: not a torchsight envelope (bad magic)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint16(4, true);
  if (version !== ENVELOPE_VERSION) throw new EnvelopeError(`envelope: version ${version} is not supported (this torchsight reads version ${ENVELOPE_VERSION})`);
  const flags = view.getUint16(6, true);
  if (flags & ~FLAG_GZIP) throw new EnvelopeError(`envelope: unknown flags ${flags}`);
  const jsonBytes = view.getUint32(8, true);
  const binBytes = view.getUint32(12, true);
  const max = options.maxBytes ?? 1 << 30;
  if (jsonBytes + binBytes > max) throw new EnvelopeError(`envelope: ${jsonBytes + binBytes} bytes exceed the limit of ${max}`, 413);
  let body: Uint8Array = bytes.subarray(HEADER);
  if (flags & FLAG_GZIP) {
    try {
      // the header's sizes bound the output: a compressed bomb stops there
      body = await gunzipAsync(body, { maxOutputLength: Math.max(1, jsonBytes + binBytes) });
    } catch (e) {
      throw new EnvelopeError(`envelope: the compressed body is corrupt or larger than its header says (${(e as Error).message})`);
    }
  }
  if (body.byteLength !== jsonBytes + binBytes)
    throw new EnvelopeError(`envelope: the header announces ${jsonBytes + binBytes} bytes, ${body.byteLength} follow`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(0, jsonBytes));
  } catch {
    throw new EnvelopeError('envelope: the JSON part is not valid UTF-8');
  }
  checkDepth(text);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new EnvelopeError(`envelope: the JSON part does not parse (${(e as Error).message})`);
  }
  return { json, bin: body.subarray(jsonBytes) };
}

// ---- requests -------------------------------------------------------------------------------

/** Encodes a native request (the tracer's packed graph and traces) with its kind and options. */
export async function encodeRequest(req: WireRequest, options: EncodeOptions = {}): Promise<Uint8Array> {
  const blobs = new BlobWriter();
  const { graph } = req;
  if (!(graph?.code instanceof Float64Array)) throw new EnvelopeError('request: graph.code must be a Float64Array');
  const json = {
    kind: 'request',
    request: req.kind,
    graph: {
      code: blobs.typed(graph.code),
      strings: graph.strings,
      tensors: graph.tensors.map((h, i) => blobs.tensor(h, `graph tensor ${i}`)),
    },
    traces: req.traces.map((t) => ({
      batch: t.batch,
      seq: t.seq,
      ids: blobs.typed(t.ids),
      mask: blobs.typed(t.mask),
      pos: blobs.typed(t.pos),
      invokes: t.invokes,
      begin: t.begin,
      end: t.end,
      stop: !!t.stop,
    })),
    ...(req.generate ? { generate: req.generate } : {}),
    blobs: blobs.specs,
  };
  return frame(json, blobs, options);
}

interface RequestJson {
  request: RequestKind;
  graph: { code: number; strings: string[]; tensors: number[] };
  traces: (Omit<WireTrace, 'ids' | 'mask' | 'pos'> & { ids: number; mask: number; pos: number })[];
  generate?: WireGenOptions;
  blobs: BlobSpec[];
}

/** Decodes a request envelope into the native request shape, its tensors made natively. */
export async function decodeRequest(bytes: Uint8Array, options: DecodeOptions = {}): Promise<DecodedRequest> {
  const { json, bin } = await unframe(bytes, options);
  if (!checkRequest(json)) throw schemaError(checkRequest);
  const j = json as unknown as RequestJson;
  const blobs = new BlobReader(j.blobs, bin, options.device ?? 'cpu');
  try {
    const ints = ['int32', 'int64'] as const;
    const traces: WireTrace[] = j.traces.map((t, i) => {
      const arr = (k: 'ids' | 'mask' | 'pos') => {
        const a = blobs.typed(t[k], ints, `trace ${i} ${k}`) as Int32Array | BigInt64Array;
        if (a.length !== t.batch * t.seq) throw new EnvelopeError(`trace ${i}: '${k}' has ${a.length} values, expected batch * seq = ${t.batch * t.seq}`);
        return a;
      };
      return {
        batch: t.batch,
        seq: t.seq,
        ids: arr('ids'),
        mask: arr('mask'),
        pos: arr('pos'),
        invokes: t.invokes.map(([s, c]) => [s, c] as [number, number]),
        begin: t.begin,
        end: t.end,
        stop: t.stop,
      };
    });
    const code = blobs.typed(j.graph.code, ['float64'], 'graph code') as Float64Array;
    const tensors = j.graph.tensors.map((k, i) => blobs.tensor(k, `graph tensor ${i}`));
    if (j.request === 'generate' && !j.generate) throw new EnvelopeError("envelope: a 'generate' request needs its options");
    if (j.request !== 'generate' && j.generate) throw new EnvelopeError(`envelope: a '${j.request}' request takes no generation options`);
    if (j.request === 'trace' && traces.length !== 1) throw new EnvelopeError("envelope: a 'trace' request holds one trace (several are a 'session')");
    if (j.request === 'generate' && traces.length !== 1) throw new EnvelopeError("envelope: a 'generate' request holds one trace");
    return {
      kind: j.request,
      traces,
      graph: { code, strings: j.graph.strings, tensors },
      ...(j.generate ? { generate: j.generate } : {}),
      tensorBytes: blobs.tensorBytes,
      dispose: () => blobs.disposeAll(),
    };
  } catch (e) {
    blobs.disposeAll();
    throw e;
  }
}

// ---- results --------------------------------------------------------------------------------

function encodeValue(v: unknown, blobs: BlobWriter, depth: number, what: string): unknown {
  if (depth > MAX_DEPTH - 8) throw new EnvelopeError(`${what}: nested too deeply`);
  if (v === null || v === undefined || typeof v === 'boolean') return v ?? null;
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return { f: 'NaN' };
    if (v === Infinity) return { f: 'Infinity' };
    if (v === -Infinity) return { f: '-Infinity' };
    if (Object.is(v, -0)) return { f: '-0' };
    return v;
  }
  if (typeof v === 'string') return { s: v };
  if (Array.isArray(v)) return v.map((x) => encodeValue(x, blobs, depth + 1, what));
  if (native().isTensor(v)) return { t: blobs.tensor(v, what) };
  throw new EnvelopeError(`${what}: cannot send a value of type ${Object.prototype.toString.call(v)}`);
}

function decodeValue(v: unknown, blobs: BlobReader, what: string): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => decodeValue(x, blobs, what));
  const o = v as { t?: number; s?: string; f?: string };
  if (o.t !== undefined) return blobs.tensor(o.t, what);
  if (o.s !== undefined) return o.s;
  return o.f === 'NaN' ? NaN : o.f === 'Infinity' ? Infinity : o.f === '-Infinity' ? -Infinity : -0;
}

/** Encodes a run's result (saved values flat, as the native run returns them). */
export async function encodeResult(res: WireResult, options: EncodeOptions = {}): Promise<Uint8Array> {
  const blobs = new BlobWriter();
  const saved: [number, unknown][] = [];
  for (let i = 0; i + 1 < res.saved.length; i += 2) {
    const id = res.saved[i] as number;
    saved.push([id, encodeValue(res.saved[i + 1], blobs, 0, `saved node ${id}`)]);
  }
  const json = { kind: 'result', saved, ...(res.generate ? { generate: res.generate } : {}), blobs: blobs.specs };
  return frame(json, blobs, options);
}

/** Decodes a result envelope: saved values flat ([id, value, ...]) with tensors as native handles on `device`. */
export async function decodeResult(bytes: Uint8Array, options: DecodeOptions = {}): Promise<DecodedResult> {
  const { json, bin } = await unframe(bytes, options);
  if (!checkResult(json)) throw schemaError(checkResult);
  const j = json as unknown as { saved: [number, unknown][]; generate?: WireResult["generate"]; blobs: BlobSpec[] };
  const blobs = new BlobReader(j.blobs, bin, options.device ?? 'cpu');
  try {
    const saved: unknown[] = [];
    for (const [id, v] of j.saved) saved.push(id, decodeValue(v, blobs, `saved node ${id}`));
    return { saved, ...(j.generate ? { generate: j.generate } : {}), dispose: () => blobs.disposeAll() };
  } catch (e) {
    blobs.disposeAll();
    throw e;
  }
}

/** Disposes the native tensors in a value (nested lists walked): the server's copy once it is encoded. */
export function disposeValues(v: unknown): void {
  if (Array.isArray(v)) for (const x of v) disposeValues(x);
  else if (v !== null && typeof v === 'object' && native().isTensor(v) && !native().tensorDisposed(v)) native().tensorDispose(v);
}
