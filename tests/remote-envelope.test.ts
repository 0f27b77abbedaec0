// The wire envelope: requests and results survive the round trip bit for bit (tensors of every
// dtype as raw bytes, never JSON numbers), large ones are compressed, and malformed bytes,
// mutated real envelopes included, give an EnvelopeError or a RequestError, never a crash.
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { native, type NativeTensor } from '../src/native.js';
import { decodeRequest, decodeResult, encodeRequest, encodeResult, EnvelopeError, type DecodedRequest } from '../src/remote/envelope.js';
import { loadServedModel, recordTrace, recordGenerate, type ServedModel } from '../src/serve/runner.js';
import { RequestError, validateRequest } from '../src/serve/validate.js';
import { MODELS } from './helpers.js';
import { packGraph, unpackNodes } from './support/wire.js';

let model: LanguageModel;
let served: ServedModel;
const LIMITS = { maxNodes: 10_000, maxTokens: 1 << 16, maxNewTokens: 64 };

beforeAll(async () => {
  model = await LanguageModel.load(MODELS.gpt2, { warmup: false });
  served = await loadServedModel(MODELS.gpt2, 'gpt2');
});
afterAll(async () => {
  await model.dispose();
  await served.dispose();
});

const handleOf = (t: Tensor) => t.native;
const bytesOf = (h: NativeTensor) => Buffer.from((native().tensorData(h) as Uint8Array).buffer);

/** A request using most of the format: a patch with a Tensor, several saves, an index, a session-free trace. */
function sample() {
  const steer = Tensor.from([[0.5, -1, 2]], { dtype: 'float16' });
  return recordTrace(model, ['The cat sat', 'A dog'], (m: any) => {
    const h = m.transformer.h[2].output[0];
    h.index(':, -1, 0:3').add_(steer);
    return { h, top: m.output.logits.index('0, -1').topk(3), mask: Tensor.from([true, false]) };
  });
}

describe('requests', () => {
  it('round-trips the packed graph, the traces and every tensor exactly', async () => {
    const rec = sample();
    const bytes = await encodeRequest(rec.request);
    expect(Buffer.from(bytes.subarray(0, 4)).toString()).toBe('TSWE');
    const dec = await decodeRequest(bytes);
    const { graph, traces } = rec.request;
    expect(Array.from(dec.graph.code)).toEqual(Array.from(graph.code));
    expect(dec.graph.strings).toEqual(graph.strings);
    expect(dec.graph.tensors.length).toBe(graph.tensors.length);
    graph.tensors.forEach((h, i) => {
      const d = dec.graph.tensors[i];
      expect(native().tensorDtype(d)).toBe(native().tensorDtype(h));
      expect(native().tensorShape(d)).toEqual(native().tensorShape(h));
      expect(bytesOf(d).equals(bytesOf(h))).toBe(true);
    });
    expect(dec.traces.length).toBe(1);
    for (const k of ['ids', 'mask', 'pos'] as const) expect(Array.from(dec.traces[0][k] as Int32Array)).toEqual(Array.from(traces[0][k] as Int32Array));
    expect(dec.traces[0].invokes).toEqual(traces[0].invokes);
    validateRequest(dec, served.target, LIMITS);
    // tensors travel as raw bytes: the JSON part holds no long runs of numbers
    const jsonLen = Buffer.from(bytes).readUInt32LE(8);
    expect(Buffer.from(bytes.subarray(16, 16 + jsonLen)).toString()).not.toMatch(/(-?\d+(\.\d+)?,){8}/);
    dec.dispose();
  });

  it('runs decoded to the same values as the local trace', async () => {
    const rec = sample();
    const dec = await decodeRequest(await encodeRequest(rec.request));
    const res = await served.run(dec, new Int32Array(new SharedArrayBuffer(4)));
    const remote = rec.resolve(await decodeResult(await encodeResult(res))) as any;
    const steer = Tensor.from([[0.5, -1, 2]], { dtype: 'float16' });
    const local = await model.trace(['The cat sat', 'A dog'], (m: any) => {
      const h = m.transformer.h[2].output[0];
      h.index(':, -1, 0:3').add_(steer);
      return { h, top: m.output.logits.index('0, -1').topk(3) };
    });
    expect(Array.from(remote.h.data())).toEqual(Array.from((local.h as Tensor).data() as Float32Array));
    expect(remote.top.indices.toArray()).toEqual((local.top as any).indices.toArray());
    expect(remote.mask.toArray()).toEqual([true, false]);
  });

  it('carries generation options and refuses kinds that do not fit', async () => {
    const rec = recordGenerate(model, 'Once', { maxNewTokens: 5, stop: ['zz', 3], seed: 7 });
    const dec = await decodeRequest(await encodeRequest(rec.request));
    expect(dec.kind).toBe('generate');
    expect(dec.generate).toMatchObject({ maxNewTokens: 5, stopStrings: ['zz'], seed: 7, temperature: 0 });
    expect(dec.generate!.stopIds).toContain(3);
    const noOpts = await encodeRequest({ ...rec.request, generate: undefined });
    await expect(decodeRequest(noOpts)).rejects.toThrow(/needs its options/);
  });
});

describe('results', () => {
  it('round-trips numbers, specials, strings, nested lists and tensors of every dtype', async () => {
    const dtypes = ['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'int16', 'int8', 'uint8', 'bool'] as const;
    const tensors = dtypes.map((dtype) => Tensor.from([[1, 0], [3, 1]], { dtype }));
    const empty = Tensor.from(new Float32Array(0), { shape: [0, 3] });
    const scalar = Tensor.from([2.5]).reshape([]);
    const saved = [0, 1.5, 1, [NaN, Infinity, -Infinity, -0, 7], 3, 'text', 4, null, 5, true, 6, tensors.map(handleOf), 9, [[handleOf(empty)], handleOf(scalar)]];
    const dec = await decodeResult(await encodeResult({ saved }));
    expect(dec.saved.slice(0, 10)).toEqual([0, 1.5, 1, [NaN, Infinity, -Infinity, -0, 7], 3, 'text', 4, null, 5, true]);
    expect(Object.is((dec.saved[3] as number[])[3], -0)).toBe(true);
    const back = dec.saved[11] as NativeTensor[];
    dtypes.forEach((dtype, i) => {
      expect(native().tensorDtype(back[i])).toBe(dtype);
      expect(new Tensor(back[i]).toArray()).toEqual(tensors[i].toArray());
    });
    const [[e], s] = dec.saved[13] as [[NativeTensor], NativeTensor];
    expect(native().tensorShape(e)).toEqual([0, 3]);
    expect(native().tensorShape(s)).toEqual([]);
    expect(new Tensor(s).item()).toBe(2.5);
  });

  it('compresses large results and decodes them to the same bytes', async () => {
    const big = Tensor.from(new Float32Array(200_000).map((_, i) => Math.round(Math.sin(i) * 4)), { shape: [200_000] });
    const bytes = await encodeResult({ saved: [0, big.native] });
    expect(Buffer.from(bytes).readUInt16LE(6) & 1).toBe(1);
    expect(bytes.byteLength).toBeLessThan(800_000 / 4);
    const dec = await decodeResult(bytes);
    expect(bytesOf(dec.saved[1] as NativeTensor).equals(bytesOf(big.native))).toBe(true);
    const plain = await encodeResult({ saved: [0, big.native] }, { compressAbove: Infinity });
    expect(Buffer.from(plain).readUInt16LE(6)).toBe(0);
    expect(plain.byteLength).toBeGreaterThan(800_000);
  });

  it('zeroes the padding between blobs, so no stale memory goes on the wire', async () => {
    // every unsafe allocation comes dirty, as reused memory may; blobs of odd sizes leave padding
    const dirty = vi.spyOn(Buffer, 'allocUnsafe').mockImplementation((n: number) => Buffer.alloc(n, 0xab));
    const odd = [3, 5, 1].map((n) => Tensor.from(new Uint8Array(n).fill(7), { dtype: 'uint8' }));
    try {
      for (const compressAbove of [Infinity, 0]) {
        const bytes = Buffer.from(await encodeResult({ saved: [0, odd.map(handleOf)] }, { compressAbove }));
        const json = bytes.readUInt32LE(8);
        const binBytes = bytes.readUInt32LE(12);
        const body = compressAbove ? bytes.subarray(16) : gunzipSync(bytes.subarray(16));
        const bin = body.subarray(json);
        expect(bin.byteLength).toBe(binBytes);
        // blobs at 0, 8, 16: 7s, then zeros to the next multiple of 8
        expect([...bin]).toEqual([...[3, 5, 1].flatMap((n) => [...Array(n).fill(7), ...Array(8 - n).fill(0)])]);
      }
      expect(dirty).toHaveBeenCalled();
    } finally {
      dirty.mockRestore();
      odd.forEach((t) => t.dispose());
    }
  });
});

/** A seeded generator (mulberry32), so a failing mutation can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function header(json: string, bin: Uint8Array = new Uint8Array(0), flags = 0): Uint8Array {
  const j = Buffer.from(json);
  const out = Buffer.alloc(16 + j.length + bin.length);
  out.write('TSWE', 0);
  out.writeUInt16LE(1, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(j.length, 8);
  out.writeUInt32LE(bin.length, 12);
  j.copy(out, 16);
  out.set(bin, 16 + j.length);
  return out;
}

describe('strict decoding', () => {
  it('refuses crafted envelopes with a clear EnvelopeError', async () => {
    const bad: [Uint8Array, RegExp][] = [
      [new Uint8Array(3), /bad magic/],
      [Buffer.from('GET / HTTP/1.1\r\n\r\n'), /bad magic/],
      [(() => { const b = header('{}'); Buffer.from(b.buffer).writeUInt16LE(9, 4); return b; })(), /version 9/],
      [header('{"kind":"request"'), /does not parse/],
      [header('{}'), /must have required property/],
      [header('['.repeat(100000) + ']'.repeat(100000)), /nested more than/],
      [header('{"kind":"result","saved":[],"blobs":[],"__proto__":{"x":1}}'), /additional properties/],
      [header('{"kind":"result","saved":[[0,{"t":0}]],"blobs":[{"dtype":"float32","shape":[4]}]}'), /needs 16 bytes/],
      [header('{"kind":"result","saved":[[0,{"t":1}]],"blobs":[{"dtype":"float32","shape":[2]}]}', new Uint8Array(8)), /blob 1 does not exist/],
      [header('{"kind":"result","saved":[],"blobs":[{"dtype":"float32","shape":[1099511627776,1099511627776]}]}'), /needs/],
      [header('{"kind":"result","saved":[],"blobs":[{"dtype":"complex64","shape":[1]}]}'), /must be equal to one of/],
      [header('{"kind":"result","saved":[],"blobs":[]}', new Uint8Array(8)), /binary section holds 8/],
      [header('{"kind":"result","saved":[],"blobs":[]}', new Uint8Array(0), 1), /corrupt|announces/],
      [header('{"kind":"result","saved":[[0,{"f":"1e999"}]],"blobs":[]}'), /schema|equal to one of|must/],
    ];
    for (const [bytes, re] of bad) {
      const err = await decodeResult(bytes).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, String(re)).toBeInstanceOf(EnvelopeError);
      expect((err as Error).message).toMatch(re);
    }
    // proto keys never reach a prototype
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('stops a compression bomb at the size its header announces', async () => {
    const bomb = gzipSync(Buffer.alloc(64 << 20));
    const b = Buffer.alloc(16 + bomb.length);
    b.write('TSWE', 0);
    b.writeUInt16LE(1, 4);
    b.writeUInt16LE(1, 6);
    b.writeUInt32LE(10, 8);
    b.writeUInt32LE(0, 12);
    bomb.copy(b, 16);
    await expect(decodeResult(b)).rejects.toThrow(/larger than its header says|corrupt/);
    const huge = header('{}');
    Buffer.from(huge.buffer).writeUInt32LE(0xffffffff, 12);
    await expect(decodeRequest(huge, { maxBytes: 1 << 20 })).rejects.toMatchObject({ status: 413 });
  });

  it('gives a clean error for hundreds of mutated real requests and results, never a crash', async () => {
    const request = await encodeRequest(sample().request);
    const saved = [0, Tensor.from([[1, 2], [3, 4]]).native, 3, [1.5, 'x', [Tensor.from([1], { dtype: 'int64' }).native]]];
    const result = await encodeResult({ saved });
    const random = rng(1234);
    const iters = Number(process.env.FUZZ_ITERS ?? 400);
    let decoded = 0;
    let refused = 0;
    for (let n = 0; n < iters; n++) {
      const base = n % 2 ? request : result;
      const b = Buffer.from(base);
      const kind = n % 5;
      let bytes: Uint8Array = b;
      if (kind === 0) for (let k = 0; k < 1 + random() * 4; k++) b[Math.floor(random() * b.length)] ^= 1 << Math.floor(random() * 8);
      else if (kind === 1) bytes = b.subarray(0, Math.floor(random() * b.length));
      else if (kind === 2) {
        // a mutation inside the JSON part: a digit, a quote or a bracket swapped for another
        const jsonLen = b.readUInt32LE(8);
        const at = 16 + Math.floor(random() * jsonLen);
        b[at] = '0123456789"[]{},:-e'.charCodeAt(Math.floor(random() * 19));
      } else if (kind === 3) b.writeUInt32LE(Math.floor(random() * 2 ** 32), 8 + 4 * Math.floor(random() * 2));
      else {
        // a word of the binary section (the packed code, ids, tensors) set to an odd value
        const jsonLen = b.readUInt32LE(8);
        const at = 16 + jsonLen + 8 * Math.floor((random() * (b.length - 16 - jsonLen)) / 8);
        if (at + 8 <= b.length) b.writeDoubleLE([NaN, -1, 1e300, 2 ** 31, 0.5, -2 - 1e6, 7][Math.floor(random() * 7)], at);
      }
      try {
        if (base === request) {
          const dec: DecodedRequest = await decodeRequest(bytes);
          try {
            validateRequest(dec, served.target, LIMITS);
          } catch (e) {
            if (!(e instanceof RequestError)) throw e;
          } finally {
            dec.dispose();
          }
        } else (await decodeResult(bytes)).dispose();
        decoded++;
      } catch (e) {
        if (!(e instanceof EnvelopeError)) throw new Error(`mutation ${n} (kind ${kind}) threw ${(e as Error)?.stack ?? e}`);
        refused++;
      }
    }
    expect(decoded + refused).toBe(iters);
    expect(refused).toBeGreaterThan(iters / 4);
  });
});

describe('the validator follows the op declarations', () => {
  /** `model.trace('Hi', fn)` recorded, its nodes in object form to mutate, and a check of the repacked request. */
  function mutable(fn: (m: any) => unknown) {
    const rec = recordTrace(model, 'Hi', fn);
    const sites = served.target.sites;
    const nodes = unpackNodes(rec.request.graph, sites);
    const check = () => {
      const graph = packGraph(nodes, new Map(sites.map((s, i) => [s, i])));
      validateRequest({ ...rec.request, graph } as DecodedRequest, served.target, LIMITS);
    };
    return { nodes, check };
  }
  const refusal = (f: () => void) => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(RequestError);
      return (e as Error).message;
    }
    throw new Error('expected a RequestError');
  };

  it('accepts every recorded form and refuses one argument past what the op declares', () => {
    const { nodes, check } = mutable((m: any) => m.transformer.h[0].output[0].add(1, { alpha: 2 }).reshape(2, -1).index('0, 0:4').save());
    check();
    const add = nodes.find((n) => n.op === 'add')!;
    expect(add.args.length).toBe(3); // self, other, alpha
    add.args.push(4);
    expect(refusal(check)).toMatch(/node \d+ \(add\): expected 1 to 3 argument\(s\) \(self, other, alpha\), got 4/);
    add.args.pop();
    // a 'number' argument (alpha) must be a number, as the tracer's own check says
    add.args[2] = 'two';
    expect(refusal(check)).toMatch(/\(add\): argument 2 must be a number/);
    add.args[2] = 2;
    // shape-like varargs travel as one list after self
    const reshape = nodes.find((n) => n.op === 'reshape')!;
    reshape.args.push([1]);
    expect(refusal(check)).toMatch(/\(reshape\): expected 1 to 2 argument/);
    reshape.args.pop();
    // an index spec is checked where the declaration says the argument is one
    const index = nodes.find((n) => n.op === 'index')!;
    index.args[1] = ['...', '...'];
    expect(refusal(check)).toMatch(/only one '\.\.\.'/);
  });

  it('refuses an op that is not declared, and a static op without its list', () => {
    const { nodes, check } = mutable((m: any) => Tensor.cat([m.transformer.h[0].output[0], m.transformer.h[1].output[0]], 1).save());
    check();
    const cat = nodes.find((n) => n.op === 'cat')!;
    const list = cat.args[0];
    cat.args[0] = 3;
    expect(refusal(check)).toMatch(/\(cat\): the first argument must be a list of tensors/);
    cat.args[0] = list;
    cat.op = 'system';
    expect(refusal(check)).toMatch(/\(system\): unknown op/);
  });
});
