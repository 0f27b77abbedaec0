// Progress for long work: model loading (bytes read), generation (steps), and the command
// line's bars for `generate` and `libtorch download` (against a local server).
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LanguageModel, type LoadProgress } from '../src/index.js';
import { discover } from '../src/install/libtorch.js';
import { MODELS, PYTHON, ROOT, childEnv, oracle, py } from './helpers.js';

/**
 * Runs the CLI (from source, as tsx) without blocking this process's event loop. A command that
 * loads the addon (`native`) keeps this process's environment, sanitizer included under
 * `npm run test:asan`, since it loads the same addon; the others get a plain child environment.
 */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, native = false): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli.ts'), ...args], { env: native ? { ...process.env, ...env } : childEnv(env), cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('load progress', () => {
  it('reports every byte of model.pt and step.pt in order, the warm-up runs, then ready, and nothing after', async () => {
    const events: LoadProgress[] = [];
    const model = await LanguageModel.load(MODELS.llama, { device: 'cpu', onProgress: (p) => events.push({ ...p }) });
    const count = events.length;
    await new Promise((r) => setTimeout(r, 50));
    expect(events.length).toBe(count); // nothing arrives after the load resolved
    await model.dispose();
    const manifest = JSON.parse(readFileSync(join(MODELS.llama, 'torchsight.json'), 'utf8'));
    const weights = statSync(join(MODELS.llama, 'model.pt')).size;
    const step = statSync(join(MODELS.llama, manifest.step.file)).size;
    expect(events[0].phase).toBe('tokenizer');
    expect(events.at(-1)).toEqual({ phase: 'ready', done: 1, total: 1, fraction: 1 });
    const w = events.filter((e) => e.phase === 'weights');
    const s = events.filter((e) => e.phase === 'step');
    expect(w.length).toBeGreaterThan(10);
    expect(w.every((e) => e.total === weights)).toBe(true);
    expect(w.at(-1)!.done).toBe(weights);
    expect(s.at(-1)!.done).toBe(step);
    // phases in order, and the overall fraction never goes back
    expect(events.map((e) => e.phase).filter((p, i, a) => p !== a[i - 1])).toEqual(['tokenizer', 'weights', 'step', 'warmup', 'ready']);
    // two forwards and a short generation (the export has a key/value-cache graph), once on the
    // graphs without sites and once on the graphs with them
    expect(events.filter((e) => e.phase === 'warmup').map((e) => [e.done, e.total])).toEqual([0, 1, 2, 3, 4, 5].map((i) => [i, 6]));
    for (let i = 1; i < events.length; i++) expect(events[i].fraction).toBeGreaterThanOrEqual(events[i - 1].fraction);
    expect(w.at(-1)!.fraction).toBeCloseTo(weights / (weights + step), 6);
  });

  it('a callback that throws rejects the load with its error (N-API would drop it)', async () => {
    const bug = new Error('progress bug');
    await expect(LanguageModel.load(MODELS.llama, { onProgress: (p) => { if (p.phase === 'weights') throw bug; } })).rejects.toBe(bug);
    await expect(LanguageModel.load(MODELS.llama, { onProgress: (p) => { if (p.phase === 'warmup') throw bug; } })).rejects.toBe(bug);
  });

  it('rejects an onProgress that is not a function', async () => {
    await expect(LanguageModel.load(MODELS.llama, { onProgress: 5 as never })).rejects.toThrow('onProgress must be a function');
  });
});

describe('generation progress', () => {
  it('reports each step of maxNewTokens', async () => {
    const model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    try {
      const seen: number[] = [];
      const out = await model.generate('The Eiffel Tower is', { maxNewTokens: 6, onProgress: (p) => seen.push(p.step / p.maxNewTokens - p.fraction, p.step) });
      const steps = seen.filter((_, i) => i % 2 === 1);
      expect(seen.filter((_, i) => i % 2 === 0).every((d) => Math.abs(d) < 1e-12)).toBe(true);
      expect(steps).toEqual(Array.from({ length: out.steps }, (_, i) => i + 1));
    } finally {
      await model.dispose();
    }
  });
});

describe('callbacks that throw during generation', () => {
  it('stop the generation, reject it with their error, and leave the model usable', async () => {
    const model = await LanguageModel.load(MODELS.gpt2, { device: 'cpu' });
    try {
      const bug = new Error('user bug');
      let calls = 0;
      await expect(model.generate('The Eiffel Tower is', { maxNewTokens: 30, onToken: () => { calls++; throw bug; } })).rejects.toBe(bug);
      expect(calls).toBe(1); // not called again once it threw
      await expect(model.generate('The Eiffel Tower is', { maxNewTokens: 4, onProgress: (p) => { if (p.step === 4) throw bug; } })).rejects.toBe(bug);
      const out = await model.generate('The Eiffel Tower is', { maxNewTokens: 4 });
      expect(out.tokens.length).toBe(4);
    } finally {
      await model.dispose();
    }
  });
});

describe('torchsight generate (command line)', () => {
  it('prints the greedy continuation eager PyTorch gives, with progress bars on stderr', async () => {
    const prompt = 'The capital of France is';
    const r = await cli(['generate', MODELS.gpt2, prompt, '--max-new-tokens', '6'], {}, true);
    expect(r.status, r.stderr).toBe(0);
    const ref = oracle<string>('gpt2', `seq = tokenizer.encode(${JSON.stringify(prompt)})
n = len(seq)
for _ in range(6):
    t = int(model(*batch_inputs([seq]))[0][0, -1].argmax())
    seq.append(t)
    if t == manifest['specialTokens']['eos']: break
result = tokenizer.decode(seq[n:])`);
    expect(r.stdout).toBe(`${prompt}${ref}\n`);
    expect(r.stderr).toContain('loading model.pt 100%');
    expect(r.stderr).toMatch(/generating 100% 6 \/ 6/);
  });
});

describe('torchsight libtorch download (command line)', () => {
  let server: Server;
  let base: string;
  let work: string;
  const zips: Record<string, Buffer> = {};

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'torchsight-dl-'));
    // A libtorch-shaped zip (with 3 MB of data so the bar moves) and a zip that is not libtorch.
    const make = (name: string, files: Record<string, string>) => {
      const r = spawnSync(PYTHON, ['-c', `import zipfile, json, os, sys
files = json.loads(sys.argv[2])
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    for n, c in files.items(): z.writestr(n, os.urandom(3 << 20) if c == 'RANDOM' else c)`, join(work, name), JSON.stringify(files)], { env: childEnv() });
      if (r.status !== 0) throw new Error(String(r.stderr));
      return readFileSync(join(work, name));
    };
    zips['/libtorch/cu128/libtorch-shared-with-deps-2.11.0%2Bcu128.zip'] = make('ok.zip', {
      'libtorch/lib/libc10.so': '',
      'libtorch/lib/libtorch_cuda.so': '',
      'libtorch/lib/blob.bin': 'RANDOM',
      'libtorch/build-version': '2.11.0+cu128\n',
    });
    zips['/libtorch/cpu/libtorch-shared-with-deps-2.11.0%2Bcpu.zip'] = make('bad.zip', { 'README': 'not libtorch' });
    server = createServer((req, res) => {
      const z = zips[req.url ?? ''];
      if (!z) return void res.writeHead(404).end('no such file');
      res.writeHead(200, { 'content-length': z.length, 'content-type': 'application/zip' });
      res.end(z);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(work, { recursive: true, force: true });
  });

  it('downloads with a bar into the cache, where discovery finds it', async () => {
    const cache = join(work, 'cache-ok');
    const r = await cli(['libtorch', 'download', '--cuda', '12.x', '--mirror', base], { TORCHSIGHT_CACHE: cache });
    expect(r.status, r.stderr).toBe(0);
    const size = zips['/libtorch/cu128/libtorch-shared-with-deps-2.11.0%2Bcu128.zip'].length;
    expect(r.stderr).toContain(`downloading libtorch 100% ${(size / 1048576).toFixed(2)} MB / ${(size / 1048576).toFixed(2)} MB`);
    expect(r.stdout).toContain('libtorch 2.11.0+cu128 (CUDA 12.8)');
    expect(r.stdout).toContain('linux-x64-torch2.11-cu128');
    expect(statSync(join(cache, 'libtorch/2.11.0+cu128/libtorch/lib/blob.bin')).size).toBe(3 << 20);
    expect(readdirSync(join(cache, 'libtorch'))).toEqual(['2.11.0+cu128']); // no .part, no .partial
    const d = discover({ PATH: process.env.PATH, TORCHSIGHT_CACHE: cache });
    const t = d.found.find((x) => x.source === 'download (2.11.0+cu128)');
    expect(t?.cuda).toBe('12.8');
  });

  it('says which address failed, and leaves nothing behind', async () => {
    const cache = join(work, 'cache-bad');
    const missing = await cli(['libtorch', 'download', '--cuda', '13.0', '--mirror', base], { TORCHSIGHT_CACHE: cache });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`${base}/libtorch/cu130/libtorch-shared-with-deps-2.11.0%2Bcu130.zip: HTTP 404`);
    const bad = await cli(['libtorch', 'download', '--mirror', base], { TORCHSIGHT_CACHE: cache });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('is not a libtorch zip (no libtorch/lib/libc10.so inside)');
    expect(existsSync(join(cache, 'libtorch')) ? readdirSync(join(cache, 'libtorch')) : []).toEqual([]);
    const wrong = await cli(['libtorch', 'download', '--cuda', 'twelve'], { TORCHSIGHT_CACHE: cache });
    expect(wrong.stderr).toContain("--cuda must be 'cpu' or a CUDA version like 12.8 or 13.0, got 'twelve'");
  });
});
