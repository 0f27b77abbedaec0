// rename: aliases for module paths (nnsight's `rename`), so one script serves GPT-2 and Llama.
// An alias read is the same site as its original path, checked against eager forward hooks;
// the tree, paths and types show both; bad renames fail before the weights load; remote too.
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { LanguageModel, type Renamed } from '../src/index.js';
import { MODELS, ROOT, expectClose, oracle, py, sameValues, type Arch } from './helpers.js';
import { serveGpt2 } from './serve-helpers.js';
import type { GPT2LMHeadModel } from '../models/gpt2/model.js';

const RENAMES = {
  gpt2: { 'transformer.h': 'layers', 'transformer.wte': 'embed', 'transformer.ln_f': 'norm' },
  llama: { 'model.layers': 'layers', 'model.embed_tokens': 'embed', 'model.norm': 'norm', self_attn: 'attn' },
} as const;
const PY_LAYERS = { gpt2: 'model.transformer.h', llama: 'model.model.layers' };

describe.each(['gpt2', 'llama'] as Arch[])('%s with aliases', (arch) => {
  let model: LanguageModel;
  let ids: number[];
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS[arch], { device: 'cpu', rename: RENAMES[arch] });
    ids = model.tokenizer.encode('The Eiffel Tower is in the city of');
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('one script: layers[i].attn, embed and norm read what eager hooks see', async () => {
    // the same callback for both architectures
    const r = await model.trace(ids, (m) => ({
      attn: m.layers[1].attn.output[0],
      block: m.layers[-1].output[0],
      embed: m.embed.output,
      norm: m.norm.output,
    }));
    const eager = oracle(arch, `
L = ${PY_LAYERS[arch]}
got = {}
L[1].${arch === 'gpt2' ? 'attn' : 'self_attn'}.register_forward_hook(lambda m, i, o: got.update(attn=o[0]))
L[-1].register_forward_hook(lambda m, i, o: got.update(block=o[0]))
${arch === 'gpt2' ? 'model.transformer.wte' : 'model.model.embed_tokens'}.register_forward_hook(lambda m, i, o: got.update(embed=o))
${arch === 'gpt2' ? 'model.transformer.ln_f' : 'model.model.norm'}.register_forward_hook(lambda m, i, o: got.update(norm=o))
model(*batch_inputs(${py([ids])}))
result = got`);
    for (const k of ['attn', 'block', 'embed', 'norm'] as const) expectClose((r as any)[k], eager[k]);
  });

  it('an alias is the original module: same path, same value, patched through either name', async () => {
    const orig = arch === 'gpt2' ? (m: any) => m.transformer.h[2] : (m: any) => m.model.layers[2];
    const r = await model.trace(ids, (m) => {
      expect(m.layers[2].path).toBe(orig(m).path);
      expect(m.layers[2]).toBe(orig(m)); // the same envoy
      return { alias: m.layers[2].output[0].clone(), orig: orig(m).output[0] };
    });
    sameValues(r.alias, r.orig);
    const zeroed = await model.trace(ids, (m) => {
      m.layers[2].output[0].zero_();
      return orig(m).output[0];
    });
    expect(zeroed.abs().sum().item()).toBe(0);
  });
});

describe('the tree, paths and types show both names', () => {
  let model: LanguageModel<Renamed<GPT2LMHeadModel, typeof RENAMES.gpt2 & { mlp: 'ffn' }>>;
  let plain: LanguageModel;
  beforeAll(async () => {
    model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', rename: { ...RENAMES.gpt2, mlp: 'ffn' } });
    plain = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false });
  });
  afterAll(async () => {
    await model.dispose();
    await plain.dispose();
  });

  it('modulePaths() lists the originals, then every path an alias makes', () => {
    const paths = model.modulePaths();
    expect(paths.slice(0, plain.modulePaths().length)).toEqual(plain.modulePaths());
    for (const p of ['layers', 'layers.3', 'layers.3.attn', 'layers.3.ffn', 'layers.3.ffn.c_fc', 'transformer.h.3.ffn', 'embed', 'norm']) expect(paths).toContain(p);
    expect(new Set(paths).size).toBe(paths.length);
  });

  it('String(model) prints each alias where it is mounted', () => {
    const s = String(model);
    expect(s).toContain('(layers): -> transformer.h');
    expect(s).toContain('(embed): -> transformer.wte');
    expect(s).toContain('(ffn): -> transformer.h.0.mlp');
    expect(s.startsWith(String(plain).split('\n')[0])).toBe(true);
  });

  it('a plain name renames that child everywhere', async () => {
    const r = await model.trace('Hello there', (m) => {
      return { a: m.layers[3].ffn.output, b: m.transformer.h[3].mlp.output, c: m.transformer.h[3].ffn.output };
    });
    sameValues(r.a, r.b);
    sameValues(r.c, r.b);
  });

  it('the typed tree (Renamed<model.d.ts, typeof rename>) has the aliases and the originals', () => {
    const file = join(ROOT, 'tests', 'fixtures', 'typed', 'renamed.ts');
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
      types: ['node'],
      typeRoots: [join(ROOT, 'node_modules', '@types')],
      skipLibCheck: true,
    });
    const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(errors).toEqual([]);
  });

  it('tracer.cache takes alias paths', async () => {
    const c = await model.trace('Hello there', (m, t) => ({ c: t.cache(['layers.4.ffn']), d: m.transformer.h[4].mlp.output }));
    sameValues(c.c['layers.4.ffn'].output, c.d);
  });
});

describe('bad renames fail with a clear error, before the weights load', () => {
  const load = (rename: unknown) => LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false, rename: rename as never });
  it('unknown paths, clashes, bad names, reserved names, cycles', async () => {
    await expect(load({ 'transformer.hh': 'layers' })).rejects.toThrow("rename: module 'transformer.hh' not found; did you mean 'transformer.h'?");
    await expect(load({ 'transformer.h': 'lm_head' })).rejects.toThrow(/rename: 'transformer.h' -> 'lm_head' clashes with 'lm_head'/);
    await expect(load({ 'transformer.h': 'x', 'transformer.wte': 'x' })).rejects.toThrow(/'transformer.wte' -> 'x' clashes with 'transformer.h'/);
    await expect(load({ mlp: 'attn' })).rejects.toThrow(/'mlp' -> 'attn' clashes with 'transformer.h.0.attn'/);
    await expect(load({ 'transformer.h': 'two words' })).rejects.toThrow(/alias of 'transformer.h' must be a name/);
    await expect(load({ 'transformer.h': 'output' })).rejects.toThrow(/'output' is a name every envoy has/);
    await expect(load({ transformer: 'transformer.h.0.inner' })).rejects.toThrow(/inside itself/);
    await expect(load({ 'transformer.h': 'nowhere.layers' })).rejects.toThrow(/no module 'nowhere' to put 'layers' in/);
    await expect(load(['transformer.h'])).rejects.toThrow(/rename must be an object/);
  });
});

describe('a remote model with rename', () => {
  it('reads through aliases on the server, equal to the original path locally', async () => {
    const server = await serveGpt2();
    const local = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false });
    try {
      const remote = await LanguageModel.remote(server.url, 'gpt2', { quiet: true, rename: RENAMES.gpt2 });
      expect(remote.modulePaths()).toContain('layers.5.mlp');
      expect(String(remote)).toContain('(layers): -> transformer.h');
      const r = await remote.trace('The Eiffel Tower', (m) => m.layers[5].output[0]);
      const l = await local.trace('The Eiffel Tower', (m) => m.transformer.h[5].output[0]);
      sameValues(r, l);
      await expect(LanguageModel.remote(server.url, 'gpt2', { quiet: true, rename: { nope: 'x' } })).rejects.toThrow(/rename: module 'nope' not found/);
      // a local renamed model sending one request to the server keeps its aliases there
      const renamed = await LanguageModel.load(MODELS.gpt2, { device: 'cpu', warmup: false, rename: RENAMES.gpt2 });
      const viaRemote = await renamed.trace('The Eiffel Tower', (m) => m.layers[5].output[0], { remote: server.url, quiet: true });
      sameValues(viaRemote, l);
      await renamed.dispose();
    } finally {
      await local.dispose();
      await server.close();
    }
  });
});
