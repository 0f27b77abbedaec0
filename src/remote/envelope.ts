// The wire format of a remote request and its result: one versioned envelope, a JSON part plus
// a binary section of raw tensor bytes, the same whatever carries it (HTTP today, a job queue
// tomorrow). A request is what the tracer hands the native entry (the packed graph, the traces'
// token ids, masks and positions) plus its kind and generation options; a result is what the
// native run returns (saved values: tensors, numbers, nested lists). Tensors and typed arrays
// travel as raw little-endian bytes, never as JSON numbers. Decoding is strict: the JSON part is
// checked against a schema, every blob's size against its shape, and any malformed input is an
// EnvelopeError, never a crash. blobs.ts writes and reads the binary section, schema.ts checks
// the JSON part.
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
import { native, type NativeTensor, type PackedGraph, type WireTrace } from '../native.js';
import { BlobReader, BlobWriter, EnvelopeError, pad8, type BlobSpec } from './blobs.js';
import { MAX_DEPTH, checkDepth, checkRequest, checkResult, schemaError } from './schema.js';

export { EnvelopeError } from './blobs.js';
export { ENVELOPE_SCHEMAS } from './schema.js';

export const ENVELOPE_VERSION = 1;
export const ENVELOPE_CONTENT_TYPE = 'application/x-torchsight';
const MAGIC = [0x54, 0x53, 0x57, 0x45]; // 'TSWE'
const HEADER = 16;
const FLAG_GZIP = 1;

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

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

// ---- framing --------------------------------------------------------------------------------

async function frame(json: object, blobs: BlobWriter, options: EncodeOptions): Promise<Uint8Array> {
  const text = Buffer.from(JSON.stringify(json), 'utf8');
  if (text.byteLength > 0xffffffff || blobs.bytes > 0xffffffff) throw new EnvelopeError('envelope: larger than 4 GiB', 413);
  const size = text.byteLength + blobs.bytes;
  const compress = size > (options.compressAbove ?? 64 * 1024);
  // uncompressed, the body is written once, in place after the header (a result is copied once)
  const body = compress ? writeBody(Buffer.allocUnsafe(size), 0, text, blobs) : undefined;
  const payload = body ? await gzipAsync(body, { level: 1 }) : undefined;
  const out = Buffer.allocUnsafe(HEADER + (payload?.byteLength ?? size));
  out.set(MAGIC, 0);
  out.writeUInt16LE(ENVELOPE_VERSION, 4);
  out.writeUInt16LE(compress ? FLAG_GZIP : 0, 6);
  out.writeUInt32LE(text.byteLength, 8);
  out.writeUInt32LE(blobs.bytes, 12);
  if (payload) out.set(payload, HEADER);
  else writeBody(out, HEADER, text, blobs);
  return out;
}

/** The JSON text, then each blob at an 8-byte step, into `out` from `at`; the padding is zeroed (unallocated memory never travels). */
function writeBody(out: Buffer, at: number, text: Buffer, blobs: BlobWriter): Buffer {
  text.copy(out, at);
  at += text.byteLength;
  for (const p of blobs.parts) {
    out.set(p, at);
    const end = at + pad8(p.byteLength);
    out.fill(0, at + p.byteLength, end);
    at = end;
  }
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
