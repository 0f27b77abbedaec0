// The command line: doctor reports the runtime, inspect the module tree with real shapes.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { doctor } from '../src/doctor.js';
import { inspect } from '../src/doctor.js';
import { MODELS, oracle } from './helpers.js';

describe('torchsight doctor', () => {
  it('names libtorch (the same version as the python3 torch built from it), CUDA, BLAS and threads', () => {
    const r = doctor();
    const py = oracle<string>(null, 'result = torch.__version__');
    expect(r.loaded).toBe(true);
    expect(py.startsWith(r.libtorch!.split('.').slice(0, 2).join('.'))).toBe(true);
    expect(r.cuda!.available).toBe(false);
    const hasOpenBlas = (() => {
      try {
        return execFileSync('dpkg-query', ['-W', '-f=${Status}', 'libopenblas0-pthread'], { encoding: 'utf8' }).includes('install ok installed');
      } catch {
        return false;
      }
    })();
    if (hasOpenBlas) expect(r.blas).toMatch(/^OpenBLAS/);
    expect(r.threads!.torch).toBeGreaterThanOrEqual(1);
  });
});

describe('torchsight inspect', () => {
  it("prints every module with its output shapes from one forward, as eager PyTorch's", async () => {
    const text = 'The Eiffel Tower is in the city of';
    const out = await inspect(MODELS.llama, text);
    const shapes = oracle<Record<string, unknown>>('llama', `shapes = {}
def walk(o):
    if isinstance(o, torch.Tensor): return list(o.shape)
    if isinstance(o, tuple): return [walk(x) for x in o]
    return None
def record(n):
    def hook(mod, i, o):
        shapes.setdefault(n, walk(o))  # returns None: the output stays as it is
    return hook
for n, m in model.named_modules():
    m.register_forward_hook(record(n))
model(*batch_inputs([tokenizer.encode(${JSON.stringify(text)})]))
result = shapes`);
    const lines = out.split('\n');
    expect(lines.length).toBe(1 + Object.keys(shapes).length + 1); // header + modules (+ the never-run ModuleList)
    const line = (path: string) => lines.find((l) => l.trim().startsWith(`${path.split('.').pop()}:`) && l.search(/\S/) === 2 * path.split('.').length)!;
    expect(line('model.layers.0')).toContain(`-> ([${(shapes['model.layers.0'] as number[][])[0].join(', ')}])`);
    expect(line('model.norm')).toContain(`-> [${(shapes['model.norm'] as number[]).join(', ')}]`);
    expect(line('lm_head')).toContain(`-> [${(shapes['lm_head'] as number[]).join(', ')}]`);
    expect(line('model.layers')).toContain('never runs');
  });
});
