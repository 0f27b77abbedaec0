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
  base: string; // the decoder stack (its output is a transformers ModelOutput)
  layers: string;
  attn: string;
  tied: string | null; // the input embedding lm_head shares, when the config ties them
}

const FAMILIES: Record<string, Family> = {
  gpt2: { base: 'transformer', layers: 'transformer.h', attn: 'attn', tied: 'transformer.wte' },
  llama: { base: 'model', layers: 'model.layers', attn: 'self_attn', tied: null },
  mistral: { base: 'model', layers: 'model.layers', attn: 'self_attn', tied: null },
  qwen2: { base: 'model', layers: 'model.layers', attn: 'self_attn', tied: 'model.embed_tokens' },
  gemma: { base: 'model', layers: 'model.layers', attn: 'self_attn', tied: 'model.embed_tokens' },
  gpt_neox: { base: 'gpt_neox', layers: 'gpt_neox.layers', attn: 'attention', tied: null },
  phi: { base: 'model', layers: 'model.layers', attn: 'self_attn', tied: null },
};
const NAMES = Object.keys(FAMILIES);
const HIDDEN = 32; // hidden size of every fixture (python/torchsight_testing/hf_fixtures.py)
const STEER = Array.from({ length: HIDDEN }, (_, i) => 2.5 * Math.sin(i * 0.7 + 0.3));
const NEW_TOKENS = 8;
// longer than the sliding windows (5) of the Mistral and Qwen2 fixtures, of different lengths
const PROMPTS = ['The Eiffel Tower is in the city of', 'Cats and dogs', 'In a small restaurant in Rome we ate pizza and'];

const PY = exporterPython();
// the addon's libtorch: these exports need 2.x (vitest.config runs this file in the torch2 project only)
const libtorch = native().info().torch;

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
  const cache = join(ROOT, '.cache', 'hf-families');
  const dir = join(cache, h.digest('hex').slice(0, 16));
  if (existsSync(join(dir, 'done'))) return dir;
  rmSync(cache, { recursive: true, force: true }); // earlier fixtures are stale: one set is kept
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

interface Reference {
  prompts: number[][];
  logits: OracleTensor[];
  patched: OracleTensor[];
  layer: OracleTensor[];
  attn: OracleTensor[];
  mlp: OracleTensor[];
  base: OracleTensor[];
  generate: number[][];
  alone: number[][];
  steered: number[][];
  plain: number[][];
  tied: boolean | null;
  classes: { layer: string; model: string };
}

/** What every family's tests compare with, from eager transformers in one Python process
 * (python/torchsight_testing/hf_reference.py). */
function references(dir: string): Record<string, Reference> {
  const families = Object.fromEntries(NAMES.map((n) => [n, { ...FAMILIES[n], src: join(dir, 'src', n), out: join(dir, 'out', n) }]));
  const r = spawnSync(PY.python, ['-m', 'torchsight_testing.hf_reference'], {
    input: JSON.stringify({ families, prompts: PROMPTS, steer: STEER, newTokens: NEW_TOKENS }),
    env: pyEnv(),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`hf_reference failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, Reference>;
}

/** The envoy at a dotted module path: `model.layers.1` is m.model.layers[1]. */
function at(m: any, path: string): any {
  return path.split('.').reduce((e, part) => (/^\d+$/.test(part) ? e[Number(part)] : e[part]), m);
}

describe('Hugging Face families (torch 2.x exports, addon on libtorch 2.x)', () => {
  let dir: string;
  let refs: Record<string, Reference>;
  beforeAll(async () => {
    if (libtorch.startsWith('1.')) {
      throw new Error(`tests/hf-families.test.ts needs the addon built on libtorch 2.x (TORCHSIGHT_ADDON=build-torch2/Release/torchsight.node); this one is on libtorch ${libtorch}, which cannot load TorchScript files from torch 2.x`);
    }
    dir = await fixtures();
    refs = references(dir);
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
      ref = refs[name];
      prompts = ref.prompts;
    }, 300_000);
    afterAll(async () => {
      await model?.dispose();
    });

    const offsets = () => {
      const width = Math.max(...prompts.map((p) => p.length));
      return prompts.map((p) => width - p.length);
    };
    const layerOut = (envoy: any) => (model.manifest.modules.find((x) => x.path === `${fam.layers}.0`)!.output!.kind === 'tuple' ? envoy.output[0] : envoy.output);

    it("encodes the prompts as transformers' tokenizer does", () => {
      expect(PROMPTS.map((p) => model.tokenizer.encode(p))).toEqual(ref.prompts);
    });

    it('keeps the eager module paths and classes, ties embeddings, and has a cache graph', () => {
      expect(model.manifest.architecture).toBe(ref.classes.model);
      const paths = model.manifest.modules.map((x) => x.path);
      for (const p of [`${fam.layers}.1`, `${fam.layers}.1.${fam.attn}`, `${fam.layers}.1.mlp`, 'lm_head']) expect(paths).toContain(p);
      expect(model.manifest.modules.find((x) => x.path === `${fam.layers}.1`)!.type).toBe(ref.classes.layer);
      if (fam.tied) expect(ref.tied).toBe(true);
      expect(model.native.hasCache).toBe(true);
    });

    it('logits, a saved decoder layer, attention, MLP and decoder-stack outputs of a left-padded batch equal eager transformers', async () => {
      const out = await model.trace(prompts, (m) => {
        const L = at(m, fam.layers);
        // the stack's output is a ModelOutput: item 0 is last_hidden_state
        return { logits: m.output.logits, layer: layerOut(L[1]), attn: L[1][fam.attn].output[0], mlp: L[1].mlp.output, base: at(m, fam.base).output[0] };
      });
      offsets().forEach((o, r) => {
        const rowOf = (t: Tensor) => t.index(`${r}, ${o}:`);
        expectClose(rowOf(out.logits), ref.logits[r], 1e-3, 1e-3);
        expectClose(rowOf(out.layer), ref.layer[r], 1e-3, 1e-3);
        expectClose(rowOf(out.attn), ref.attn[r], 1e-3, 1e-3);
        expectClose(rowOf(out.mlp), ref.mlp[r], 1e-3, 1e-3);
        expectClose(rowOf(out.base), ref.base[r], 1e-3, 1e-3);
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
