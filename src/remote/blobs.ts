// Blobs of the envelope (envelope.ts): typed arrays and tensors as raw little-endian bytes,
// written into and read back from its binary section with every size checked; and the error a
// malformed envelope gives.
import { native, type NativeTensor } from '../native.js';

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

export const DTYPES = ['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'] as const;
export type Dtype = (typeof DTYPES)[number];
export type Raw = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/** The typed array a dtype's bytes travel as (float16/bfloat16 widen to float32, exactly; bool as uint8). */
export const RAW: Record<Dtype, { new (b: ArrayBuffer): Raw; BYTES_PER_ELEMENT: number }> = {
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

export interface BlobSpec {
  dtype: Dtype;
  shape: number[];
}

/** Collects blobs while a JSON part is built. */
export class BlobWriter {
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

export const pad8 = (n: number) => (n + 7) & ~7;

/** Reads blobs back: each a copy into its own aligned buffer. */
export class BlobReader {
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

