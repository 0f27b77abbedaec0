// Bad input: a clear error naming the thing and (inside a trace) the user's own line; the
// process never dies and the model stays usable.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { cpSync, mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, basename } from 'node:path';
import { LanguageModel, Tensor } from '../src/index.js';
import { MODELS, runNodes } from './helpers.js';
import { wireRequest } from './support/wire.js';
import type { NativeTensor } from '../src/native.js';

/** file:line of the caller, from V8's own stack (independent of torchsight's capture). */
function here(): string {
  const line = new Error().stack!.split('\n')[2];
  const m = /([^/\\(]+):(\d+):\d+\)?$/.exec(line)!;
  return `${basename(m[1])}:${m[2]}`;
}

function copyModel(): string {
  const dir = mkdtempSync(join(tmpdir(), 'torchsight-bad-'));
  cpSync(MODELS.gpt2, dir, { recursive: true });
  return dir;
}

describe('loading bad input', () => {
  it('a missing folder', async () => {
    await expect(LanguageModel.load('/nonexistent/model')).rejects.toThrow('/nonexistent/model: no such model folder');
  });

  it('a model.pt that is not TorchScript', async () => {
    const dir = copyModel();
    writeFileSync(join(dir, 'model.pt'), 'this is not a zip archive');
    await expect(LanguageModel.load(dir, { device: 'cpu' })).rejects.toThrow(/model\.pt: not a loadable TorchScript model/);
    rmSync(dir, { recursive: true });
  });

  it('a manifest of another format version, or not JSON', async () => {
    const dir = copyModel();
    const file = join(dir, 'torchsight.json');
    const m = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...m, version: 99 }));
    await expect(LanguageModel.load(dir)).rejects.toThrow(/torchsight\.json: manifest format version 99 is not supported/);
    writeFileSync(file, '{ not json');
    await expect(LanguageModel.load(dir)).rejects.toThrow(/torchsight\.json: not valid JSON/);
    rmSync(dir, { recursive: true });
  });

  it('a missing tokenizer.json', async () => {
    const dir = copyModel();
    rmSync(join(dir, 'tokenizer.json'));
    await expect(LanguageModel.load(dir)).rejects.toThrow(/tokenizer\.json: not found/);
    rmSync(dir, { recursive: true });
  });

  it('unknown devices and dtypes', async () => {
    await expect(LanguageModel.load(MODELS.gpt2, { device: 'tpu' })).rejects.toThrow("unknown device 'tpu'; expected 'cpu', 'cuda' or 'cuda:N'");
    await expect(LanguageModel.load(MODELS.gpt2, { device: 'cuda:x' })).rejects.toThrow(/unknown device 'cuda:x'/);
    await expect(LanguageModel.load(MODELS.gpt2, { dtype: 'int8' as never })).rejects.toThrow(/dtype must be/);
    expect(() => Tensor.from([1], { device: 'tpu' })).toThrow(/unknown device 'tpu'/);
  });
});

describe('trace errors', () => {
  let model: LanguageModel;
  let ids: number[];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    ids = model.tokenizer.encode('The Eiffel Tower');
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('out-of-vocabulary token ids name the id and the position', async () => {
    await expect(model.trace([1, 2, 100000], (m) => m.output.logits)).rejects.toThrow(
      'input row 0, position 2: token id 100000 is outside the vocabulary [0, 512)',
    );
    await expect(model.trace([[1, 2], [-1]], (m) => m.output.logits)).rejects.toThrow(/row 1, position 0: token id -1/);
    await expect(model.trace([1.5], (m) => m.output.logits)).rejects.toThrow(/token id 1.5/);
    // the native side checks too, for graphs that do not come through the tokenizer path
    await expect(
      runNodes(model.native, {
        traces: [{ batch: 1, seq: 1, ids: new BigInt64Array([9999n]), mask: new BigInt64Array([1n]), pos: new BigInt64Array([0n]), invokes: [[0, 1]], begin: 0, end: 0, stop: false }],
        nodes: [],
      }),
    ).rejects.toThrow(/token id 9999 at position 0 of row 0 is outside the vocabulary/);
  });

  it('a shape error inside the forward names the op, the shapes and the line that built it', async () => {
    const bad = Tensor.from([1, 2, 3]);
    let loc = '';
    const p = model.trace(ids, (m) => {
      m.transformer.h[2].output[0].add_(bad); loc = here();
      return m.output.logits;
    });
    await expect(p).rejects.toThrow(new RegExp(`^add_ at ${loc.replace('.', '\\.')}:\\d+: .*shapes \\[1, ${ids.length}, 64\\] and \\[3\\]`));
    // the model is usable afterwards and gives the plain result
    const l = await model.trace(ids, (m) => m.output.logits);
    expect(l.shape).toEqual([1, ids.length, 512]);
  });

  it('an in-place change that needs a later value is refused with the line', async () => {
    let loc = '';
    const p = model.trace(ids, (m) => {
      const early = m.transformer.h[1].output[0];
      early.add_(m.transformer.h[5].output[0]); loc = here();
    });
    await expect(p).rejects.toThrow(new RegExp(`add_ at ${loc.replace('.', '\\.')}:\\d+: changes an activation in place after the forward has moved past`));
  });

  it('a site that never fired is named', async () => {
    const nm = model.native;
    const trace = { batch: 1, seq: 2, ids: new BigInt64Array([1n, 2n]), mask: new BigInt64Array([1n, 1n]), pos: new BigInt64Array([0n, 1n]), invokes: [[0, 1]] as [number, number][], begin: 0, end: 1, stop: false };
    await expect(runNodes(nm, { traces: [trace], nodes: [{ id: 0, op: 'read', args: [], site: 'transformer.h.3:output:0', occ: 2, loc: 'x.ts:1:1', save: true }] })).rejects.toThrow(
      "read at x.ts:1:1: site 'transformer.h.3:output:0' never fired: it fired 1 time(s), call 2 does not exist",
    );
  });

  it('an error while recording or sending rejects the promise; nothing throws synchronously', async () => {
    const calls: [string, () => Promise<unknown>, RegExp][] = [
      ['callback throws', () => model.trace(ids, () => { throw new Error('mine'); }), /mine/],
      ['no callback', () => model.trace(ids, 5 as never), /fn must be a function/],
      ['bad envoy name', () => model.trace(ids, (m: any) => m.nope.output), /nope/],
      ['session not a function', () => model.session(3 as never), /fn must be a function/],
      ['empty session', () => model.session(() => undefined), /recorded no trace/],
      ['aborted signal', () => model.trace(ids, (m) => m.transformer.h[0].output[0], { signal: AbortSignal.abort(new Error('stop now')) }), /stop now/],
    ];
    for (const [what, call, msg] of calls) {
      let p: Promise<unknown> | undefined;
      expect(() => (p = call()), what).not.toThrow();
      expect(p, what).toBeInstanceOf(Promise);
      await expect(p, what).rejects.toThrow(msg);
    }
    // and the model still traces
    expect((await model.trace(ids, (m) => m.transformer.h[0].output[0])).shape).toEqual([1, ids.length, 64]);
  });

  it('pruned sites, modules that cannot be applied, async callbacks and foreign proxies', async () => {
    const llama = await LanguageModel.load(MODELS.llama, { device: 'cpu' });
    await expect(llama.trace(ids, (m) => m.model.rotary_emb.input)).rejects.toThrow(/'model\.rotary_emb:input:0'\) was pruned by the export/);
    await expect(llama.trace(ids, (m) => m.model.layers[0].self_attn(m.model.layers[0].input))).rejects.toThrow(/module 'model\.layers\.0\.self_attn' \(\w+\) cannot be applied/);
    await llama.dispose();
    await expect(model.trace(ids, (async () => 1) as never)).rejects.toThrow(/must record synchronously/);
    let leaked: any;
    await model.trace(ids, (m) => { leaked = m.transformer.h[0].output[0]; });
    expect(() => leaked.save()).toThrow(/save\(\): this trace has already been sent; call \.save\(\) inside the trace callback \(read node 0\)/);
    await expect(model.trace(ids, (m) => { m.transformer.h[0].output[0].add_(leaked); })).rejects.toThrow(/a proxy from another trace was used/);
    // envoys are kept per module (as nnsight's): one kept from a trace records into the trace
    // open when it is used, and outside any trace it says so
    let block: any;
    const direct = await model.trace(ids, (m) => { block = m.transformer.h[4]; return m.transformer.h[4].output[0]; });
    expect(block).toBe((await new Promise((r) => void model.trace(ids, (m) => r(m.transformer.h[4])))));
    const viaKept = await model.trace(ids, () => block.output[0]);
    expect(Array.from(viaKept.data() as Float32Array)).toEqual(Array.from(direct.data() as Float32Array));
    expect(() => block.output[0]).toThrow(/transformer\.h\.4\.output\[0\]: envoys record only while a trace callback runs/);
    expect(() => block.ln_1(Tensor.from([1]))).toThrow(/module 'transformer\.h\.4\.ln_1': envoys record only while a trace callback runs/);
  });

  it('malformed graphs sent to the native entry are rejected, not crashed', async () => {
    const nm = model.native;
    const trace = { batch: 1, seq: 1, ids: new BigInt64Array([1n]), mask: new BigInt64Array([1n]), pos: new BigInt64Array([0n]), invokes: [[0, 1]] as [number, number][], begin: 0, end: 1, stop: false };
    const cases: [unknown, RegExp][] = [
      [{ id: 0, op: 'nope', args: [] }, /unknown op/],
      [{ id: 0, op: 'add', args: [{ ref: 0 }, 1] }, /a reference must point to an earlier node/],
      [{ id: 0, op: 'read', args: [], site: 'no.such:site' }, /site 'no.such:site' does not exist/],
      [{ id: 0, op: 'add', args: [] }, /expected 2 to 3 arguments/],
      [{ id: 5, op: 'add', args: [] }, /ids must be 0, 1, 2/],
      [{ id: 0, op: 'index', args: [Tensor.from([1, 2]).native, [7]] }, /index 7 is out of range/],
      [{ id: 0, op: 'reshape', args: [Tensor.from([1, 2]).native, [3]] }, /reshape/],
      [{ id: 0, op: 'apply', args: ['transformer.h.0.attn', 1] }, /Expected a value of type 'Tensor'/],
      [{ id: 0, op: 'apply', args: ['transformer', 1] }, /cannot be applied/],
      ['garbage', /must be an object/],
    ];
    for (const [node, msg] of cases) await expect(runNodes(nm, { traces: [trace], nodes: [node as never] })).rejects.toThrow(msg);
    await expect(runNodes(nm, { traces: [], nodes: [] })).rejects.toThrow(/1 to 4096 traces/);
    await expect(nm.run(null as never)).rejects.toThrow(/run\(request\)/);
    // the packed form itself: every word is checked
    const good = wireRequest(nm, { traces: [trace], nodes: [{ id: 0, op: 'add', args: [Tensor.from([1, 2]).native, 1], save: true }] });
    const saved = await nm.run(good);
    expect(saved.saved.length).toBe(2); // flat: node id, value
    expect(saved.saved[0]).toBe(0);
    expect(Array.from(new Tensor(saved.saved[1] as NativeTensor).data())).toEqual([2, 3]);
    const withCode = (edit: (c: number[]) => number[], tables: Partial<typeof good.graph> = {}) =>
      nm.run({ ...good, graph: { ...good.graph, ...tables, code: Float64Array.from(edit([...good.graph.code])) } });
    // thunks: each request is sent when its expectation runs (no promise left unawaited on a failure)
    const packed: [() => Promise<unknown>, RegExp][] = [
      [() => withCode((c) => [2, ...c.slice(1)]), /packed with another version/],
      [() => withCode((c) => c.slice(0, -1)), /ends early/],
      [() => withCode((c) => [...c, 0]), /more follow the last node/],
      [() => withCode((c) => [1, 2 ** 40, ...c.slice(2)]), /'node count' must be an integer/],
      // a large count with little code behind it is refused before anything is allocated for it
      [() => withCode((c) => [1, 100000, ...c.slice(2)]), /100000 nodes need at least 900000 more words, 13 follow/],
      [() => withCode((c) => c.map((x, i) => (i === 2 ? 99 : x))), /string 99 is not in the table/],
      [() => withCode((c) => c.map((x, i) => (i === 3 ? 1e9 : x))), /only read and write nodes have a site/],
      [() => withCode((c) => c.map((x, i) => (i === 4 ? NaN : x))), /'occ' must be an integer/],
      [() => withCode((c) => c.map((x, i) => (i === 11 ? 9 : x))), /'argument tag' must be an integer in \[0, 6\]/],
      [() => withCode((c) => c.map((x, i) => (i === 12 ? 3 : x))), /tensor 3 is not in the table/],
      [() => withCode((c) => c, { tensors: [{} as never] }), /tensor 0 of the table is not a Tensor/],
      // a tensor handle's prototype (null: an External) on an object of the user's
      [() => withCode((c) => c, { tensors: [Object.create(Object.getPrototypeOf(Tensor.from([1]).native)) as never] }), /tensor 0 of the table is not a Tensor/],
      [() => withCode((c) => c, { strings: [7 as never] }), /string 0 of the table is not a string/],
      [() => nm.run({ ...good, graph: { ...good.graph, code: [1, 0] as never } }), /'code' must be a Float64Array/],
    ];
    for (const [k, [send, msg]] of packed.entries()) await expect(send().then(() => `case ${k} ran`)).rejects.toThrow(msg);
    // and the model is still fine
    expect(Array.from(new Tensor((await nm.run(good)).saved[1] as NativeTensor).data())).toEqual([2, 3]);
  });
});

describe('native classes', () => {
  it('cannot be constructed from JavaScript, and a refused attempt does not unlock the next', async () => {
    const { native } = await import('../src/native.js');
    const addon = native() as unknown as { NativeModel: new () => unknown; loadModel: (p: string, d: string, t: string) => Promise<{ dispose(): void; sites(): string[] }> };
    expect(() => new addon.NativeModel()).toThrow('NativeModel cannot be constructed directly; use loadModel');
    // the real path goes through the same gate and still works, and leaves it shut
    const nm = await addon.loadModel(join(MODELS.gpt2, 'model.pt'), 'cpu', '');
    expect(Array.isArray(nm.sites())).toBe(true);
    nm.dispose();
    expect(() => new addon.NativeModel()).toThrow('cannot be constructed directly');
  });

  it('tensor handles: only the addon\'s own are taken, a disposed one says so, and nothing else crashes it', async () => {
    const { native } = await import('../src/native.js');
    const addon = native();
    const t = Tensor.from([1, 2, 3]);
    const h = t.native;
    expect(addon.isTensor(h)).toBe(true);
    expect(addon.tensorShape(h)).toEqual([3]);
    for (const v of [undefined, null, 1, 'x', {}, [], Object.create(null), () => 0, Object.create(Object.getPrototypeOf(h) ?? null)]) {
      expect(addon.isTensor(v)).toBe(false);
      expect(() => addon.tensorShape(v as never)).toThrow('tensorShape(handle): not a tensor handle');
      expect(() => addon.tensorDispose(v as never)).toThrow('tensorDispose(handle): not a tensor handle');
    }
    expect(() => (addon.tensorData as (...a: unknown[]) => unknown)()).toThrow('tensorData(handle): not a tensor handle');
    addon.tensorDispose(h);
    expect(addon.isTensor(h)).toBe(true); // still a handle, now empty
    expect(addon.tensorDisposed(h)).toBe(true);
    expect(() => addon.tensorItem(h)).toThrow('this Tensor was disposed');
    expect(() => t.shape).toThrow('this Tensor was disposed');
    addon.tensorDispose(h); // twice is fine
  });
});

describe('out of memory', () => {
  it('an allocation no machine can make fails cleanly, eagerly and inside the forward at layer 5', async () => {
    // [2^23, 1] x [1, 2^23] needs 2^46 floats (256 TB): more than the address space, refused at once
    const n = 2 ** 23;
    const a = Tensor.from(new Float32Array(n), { shape: [n, 1] });
    const b = Tensor.from(new Float32Array(n), { shape: [1, n] });
    expect(() => a.matmul(b)).toThrow(/matmul: .*(alloc|memory)/i);
    const model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    const ids = model.tokenizer.encode('The Eiffel Tower');
    const before = await model.trace(ids, (m) => m.output.logits);
    await expect(
      model.trace(ids, (m) => {
        const h = m.transformer.h[5].output[0];
        const column = h.index('0, 0, 0:1').mul(0).add(a); // [2^23, 1], computed when layer 5 runs
        h.index(':, -1').add_(column.matmul(b).sum());
      }),
    ).rejects.toThrow(/(alloc|memory)/i);
    const after = await model.trace(ids, (m) => m.output.logits);
    expect(Array.from(after.data() as Float32Array)).toEqual(Array.from(before.data() as Float32Array));
    await model.dispose();
  });
});

describe('results past the one-call array maker', () => {
  it('a trace returning 2100 values (4200 items, filled one by one natively) gives each its own', async () => {
    const model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    const ids = model.tokenizer.encode('The Eiffel Tower');
    const out = await model.trace(ids, (m) => {
      const x = m.transformer.h[0].output[0].index('0, 0, 0');
      return Array.from({ length: 2100 }, (_, k) => x.add(k));
    });
    expect(out.length).toBe(2100);
    const base = out[0].item();
    for (let k = 0; k < out.length; k += 1) expect(out[k].item() - base).toBeCloseTo(k, 3);
    await model.dispose();
  });
});
