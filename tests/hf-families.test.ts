// Real Hugging Face models, one tiny random-init member of each supported family, exported by the
// CLI and checked against eager transformers (its own masks and cache, forward hooks for the
// interventions): logits of a left-padded batch, a saved and a patched decoder-layer output, the
// attention and MLP outputs, greedy generation against transformers' generate() with and
// without our cache, and steering at every step against uncached eager recomputation.
// Exports made by torch 2.x load only in an addon built on libtorch 2.x (TORCHSIGHT_ADDON).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { exporterPython, pythonVersions } from '../src/install/python-env.js';
import { native } from '../src/native.js';
import { ROOT, childEnv, expectClose, py, type OracleTensor } from './helpers.js';

interface Family {
  layers: string;
  attn: string;
  tied: string | null; // the input embedding lm_head shares, when the config ties them
}

const FAMILIES: Record<string, Family> = {
  gpt2: { layers: 'transformer.h', attn: 'attn', tied: 'transformer.wte' },
  llama: { layers: 'model.layers', attn: 'self_attn', tied: null },
  mistral: { layers: 'model.layers', attn: 'self_attn', tied: null },
  qwen2: { layers: 'model.layers', attn: 'self_attn', tied: 'model.embed_tokens' },
  gemma: { layers: 'model.layers', attn: 'self_attn', tied: 'model.embed_tokens' },
  gpt_neox: { layers: 'gpt_neox.layers', attn: 'attention', tied: null },
  phi: { layers: 'model.layers', attn: 'self_attn', tied: null },
};
const NAMES = Object.keys(FAMILIES);
const HIDDEN = 32; // hidden size of every fixture (python/torchsight_testing/hf_fixtures.py)
const STEER = Array.from({ length: HIDDEN }, (_, i) => 2.5 * Math.sin(i * 0.7 + 0.3));
const NEW_TOKENS = 8;
// longer than the sliding windows (5) of the Mistral and Qwen2 fixtures, of different lengths
const PROMPTS = ['The Eiffel Tower is in the city of', 'Cats and dogs', 'In a small restaurant in Rome we ate pizza and'];

const PY = exporterPython();
const torch2 = (() => {
  try {
    return !native().info().torch.startsWith('1.');
  } catch {
    return false;
  }
})();

function pyEnv(): NodeJS.ProcessEnv {
  return childEnv({ PYTHONPATH: join(ROOT, 'python') });
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d) => (log += d));
    child.stderr.on('data', (d) => (log += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${log.slice(-4000)}`))));
  });
}

/** Fixtures and their exports, built once per content of what makes them (cached in .cache/). */
async function fixtures(): Promise<string> {
  const h = createHash('sha256');
  const files = [
    ...readdirSync(join(ROOT, 'python', 'torchsight_export'), { recursive: true }).map((f) => join('python', 'torchsight_export', String(f))),
    'python/torchsight_testing/hf_fixtures.py',
    'python/torchsight_testing/examples.py',
    'python/requirements.txt',
  ].filter((f) => f.endsWith('.py') || f.endsWith('.txt'));
  for (const f of files.sort()) h.update(f).update(readFileSync(join(ROOT, f)));
  h.update(JSON.stringify(pythonVersions(PY.python)));
  const dir = join(ROOT, '.cache', 'hf-families', h.digest('hex').slice(0, 16));
  if (existsSync(join(dir, 'done'))) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await run(PY.python, ['-m', 'torchsight_testing.hf_fixtures', '--out', join(dir, 'src')], pyEnv());
  // the CLI, as a user runs it; two at a time (each is one Python process)
  const queue = [...NAMES];
  const cli = [join(ROOT, 'node_modules', '.bin', 'tsx'), join(ROOT, 'src', 'cli.ts')];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) await run(cli[0], [cli[1], 'export', join(dir, 'src', f), join(dir, 'out', f)], childEnv());
  };
  await Promise.all([worker(), worker()]);
  writeFileSync(join(dir, 'done'), new Date().toISOString());
  return dir;
}

function hfOracle<T>(modelDir: string, code: string): T {
  const r = spawnSync(PY.python, ['-m', 'torchsight_testing.hf_oracle'], {
    input: JSON.stringify({ model: modelDir, code }),
    env: pyEnv(),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`hf oracle failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface Reference {
  logits: OracleTensor[];
  patched: OracleTensor[];
  layer: OracleTensor[];
  attn: OracleTensor[];
  mlp: OracleTensor[];
  generate: number[][];
  alone: number[][];
  steered: number[][];
  plain: number[][];
  tied: boolean | null;
  classes: { layer: string; model: string };
}

/** Everything one family's tests compare with, from one Python process. */
function reference(srcDir: string, outDir: string, fam: Family, prompts: number[][]): Reference {
  return hfOracle<Reference>(srcDir, `
import torchsight_export  # the hook op, to load the export
L = get_module(${py(fam.layers)})
prompts = ${py(prompts)}
ids, mask, pos = batch_inputs(prompts)
offsets = [ids.shape[1] - len(p) for p in prompts]
rows = lambda t: [t[r, o:] for r, o in enumerate(offsets)]  # real (unpadded) positions of each row
first = lambda o: o[0] if isinstance(o, tuple) else o
fwd = lambda i, m, p: model(input_ids=i, attention_mask=m, position_ids=p).logits
acts = {}
hs = [L[1].register_forward_hook(lambda m, i, o: acts.__setitem__('layer', first(o).clone())),
      getattr(L[1], ${py(fam.attn)}).register_forward_hook(lambda m, i, o: acts.__setitem__('attn', o[0].clone())),
      L[1].mlp.register_forward_hook(lambda m, i, o: acts.__setitem__('mlp', o.clone()))]
logits = fwd(ids, mask, pos)
for h in hs: h.remove()
steer = torch.tensor(${py(STEER)})
def add(m, i, o):
    return (o[0] + steer,) + tuple(o[1:]) if isinstance(o, tuple) else o + steer
def greedy(p):
    seq, out = list(p), []
    for _ in range(${NEW_TOKENS}):
        t = int(fwd(*batch_inputs([seq]))[0, -1].argmax()); out.append(t); seq.append(t)
    return out
h = L[0].register_forward_hook(add)
patched = fwd(ids, mask, pos)
steered = [greedy(p) for p in prompts]
h.remove()
plain = [greedy(p) for p in prompts]
gen = lambda i, m: model.generate(input_ids=i, attention_mask=m, do_sample=False, max_new_tokens=${NEW_TOKENS},
                                  min_new_tokens=${NEW_TOKENS}, pad_token_id=pad_id)[:, i.shape[1]:].tolist()
ts = torch.jit.load(${py(join(outDir, 'model.pt'))})
tied = None
if ${py(fam.tied)} is not None:
    emb = dict(ts.named_modules())[${py(fam.tied)}]
    tied = ts.lm_head.weight.data_ptr() == emb.weight.data_ptr()
result = {'logits': rows(logits), 'patched': rows(patched), 'layer': rows(acts['layer']), 'attn': rows(acts['attn']),
          'mlp': rows(acts['mlp']), 'generate': gen(ids, mask),
          'alone': [gen(torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long))[0] for p in prompts],
          'steered': steered, 'plain': plain, 'tied': tied,
          'classes': {'layer': type(L[1]).__name__, 'model': type(model).__name__}}`);
}

/** The envoy at a dotted module path: `model.layers.1` is m.model.layers[1]. */
function at(m: any, path: string): any {
  return path.split('.').reduce((e, part) => (/^\d+$/.test(part) ? e[Number(part)] : e[part]), m);
}

describe.skipIf(!torch2)('Hugging Face families (torch 2.x exports, addon on libtorch 2.x)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fixtures();
  }, 900_000);

  it('an unsupported architecture is refused, naming it and what is missing', () => {
    const code = `import sys, torch, transformers
from torchsight_export import export_model, ExportError
cfg = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, is_decoder=True)
m = transformers.BertLMHeadModel(cfg).eval()
try:
    export_model(m, sys.argv[1], example_ids=[1, 2, 3, 4])
except ExportError as e:
    print(e)`;
    const r = spawnSync(PY.python, ['-c', code, join(dir, 'refused')], { env: pyEnv(), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/architecture BertLMHeadModel \(model_type 'bert'\) is not supported/);
    expect(r.stdout).toMatch(/no adapter.*attention mask and a key\/value-cache mapping/);
    expect(r.stdout).toMatch(/Supported: GPT-2 \(gpt2\), Llama \(llama\)/);
  });

  describe.each(NAMES)('%s', (name) => {
    const fam = FAMILIES[name];
    let model: LanguageModel;
    let prompts: number[][];
    let ref: Reference;
    beforeAll(async () => {
      model = await LanguageModel.load(join(dir, 'out', name), { device: 'cpu' });
      prompts = PROMPTS.map((p) => model.tokenizer.encode(p));
      ref = reference(join(dir, 'src', name), join(dir, 'out', name), fam, prompts);
    }, 300_000);
    afterAll(async () => {
      await model?.dispose();
    });

    const offsets = () => {
      const width = Math.max(...prompts.map((p) => p.length));
      return prompts.map((p) => width - p.length);
    };
    const layerOut = (envoy: any) => (model.manifest.modules.find((x) => x.path === `${fam.layers}.0`)!.output!.kind === 'tuple' ? envoy.output[0] : envoy.output);

    it('keeps the eager module paths and classes, ties embeddings, and has a cache graph', () => {
      expect(model.manifest.architecture).toBe(ref.classes.model);
      const paths = model.manifest.modules.map((x) => x.path);
      for (const p of [`${fam.layers}.1`, `${fam.layers}.1.${fam.attn}`, `${fam.layers}.1.mlp`, 'lm_head']) expect(paths).toContain(p);
      expect(model.manifest.modules.find((x) => x.path === `${fam.layers}.1`)!.type).toBe(ref.classes.layer);
      if (fam.tied) expect(ref.tied).toBe(true);
      expect(model.native.hasCache).toBe(true);
    });

    it('logits, a saved decoder layer, attention and MLP outputs of a left-padded batch equal eager transformers', async () => {
      const out = await model.trace(prompts, (m) => {
        const L = at(m, fam.layers);
        return { logits: m.output.logits, layer: layerOut(L[1]), attn: L[1][fam.attn].output[0], mlp: L[1].mlp.output };
      });
      offsets().forEach((o, r) => {
        const rowOf = (t: Tensor) => t.index(`${r}, ${o}:`);
        expectClose(rowOf(out.logits), ref.logits[r], 1e-3, 1e-3);
        expectClose(rowOf(out.layer), ref.layer[r], 1e-3, 1e-3);
        expectClose(rowOf(out.attn), ref.attn[r], 1e-3, 1e-3);
        expectClose(rowOf(out.mlp), ref.mlp[r], 1e-3, 1e-3);
      });
    });

    it('a patched decoder-layer output gives the logits of eager transformers with the same hook', async () => {
      const steer = Tensor.from(STEER);
      const logits = await model.trace(prompts, (m) => {
        const L0 = at(m, fam.layers)[0];
        if (model.manifest.modules.find((x) => x.path === `${fam.layers}.0`)!.output!.kind === 'tuple') L0.output[0] = L0.output[0].add(steer);
        else L0.output = L0.output.add(steer);
        return m.output.logits;
      });
      offsets().forEach((o, r) => expectClose(logits.index(`${r}, ${o}:`), ref.patched[r], 1e-3, 1e-3));
      // the patch moved the logits, or this test could not fail
      expect(Math.abs((ref.patched[0].data[0] as number) - (ref.logits[0].data[0] as number))).toBeGreaterThan(1e-2);
    });

    for (const useCache of [true, false]) {
      it(`greedy generation equals transformers' generate(do_sample=False) token for token (${useCache ? 'with' : 'without'} the cache), alone and batched`, async () => {
        for (let i = 0; i < prompts.length; i++) {
          const out = await model.generate(prompts[i], { maxNewTokens: NEW_TOKENS, useCache });
          expect(out.usedCache).toBe(useCache);
          expect(out.tokens).toEqual(ref.alone[i]);
        }
        const batched = await model.generate(prompts, { maxNewTokens: NEW_TOKENS, useCache });
        expect(batched.tokens).toEqual(ref.generate);
      });

      it(`steering at every step equals uncached eager recomputation with the hook (${useCache ? 'with' : 'without'} the cache)`, async () => {
        const steer = Tensor.from(STEER);
        const out = await model.generate(prompts, { maxNewTokens: NEW_TOKENS, useCache }, (m, gen) => {
          gen.all((m) => {
            const L0 = at(m, fam.layers)[0];
            if (model.manifest.modules.find((x) => x.path === `${fam.layers}.0`)!.output!.kind === 'tuple') L0.output[0] = L0.output[0].add(steer);
            else L0.output = L0.output.add(steer);
          });
        });
        expect(out.tokens).toEqual(ref.steered);
        expect(ref.steered).not.toEqual(ref.plain); // the steering changed the generation
      });
    }
  });
});
