// The command line: doctor reports the runtime, inspect the module tree with real shapes.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { blasAdvice, doctor, formatDoctor } from '../src/doctor.js';
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
    if (r.blas.startsWith('OpenBLAS')) {
      // the kernels OpenBLAS chose, as OpenBLAS itself names them to another process on this CPU
      const core = execFileSync('/usr/bin/python3', ['-c', "import ctypes; f = ctypes.CDLL('libopenblas.so.0').openblas_get_corename; f.restype = ctypes.c_char_p; print(f().decode())"], { encoding: 'utf8' }).trim();
      expect(r.blasCore).toBe(core);
      expect(formatDoctor(r)).toContain(`, ${core} kernels`);
    }
  });

  it('says which OPENBLAS_CORETYPE to set when OpenBLAS runs kernels older than the CPU', () => {
    const flags = (s: string) => new Set(s.split(' '));
    const avx512 = flags('sse3 avx avx2 fma avx512f avx512bw avx512vl avx512dq avx512cd');
    expect(blasAdvice('Prescott', avx512)).toMatch(/OPENBLAS_CORETYPE=SkylakeX/);
    expect(blasAdvice('Sandybridge', flags('sse3 avx avx2 fma'))).toMatch(/OPENBLAS_CORETYPE=Haswell/);
    // kernels that fit the CPU, or a CPU without AVX2: nothing to say
    expect(blasAdvice('SkylakeX', avx512)).toBeUndefined();
    expect(blasAdvice('Haswell', flags('avx avx2 fma'))).toBeUndefined();
    expect(blasAdvice('Prescott', flags('sse3 ssse3'))).toBeUndefined();
    expect(blasAdvice(undefined, avx512)).toBeUndefined();
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
