// `torchsight doctor` and `torchsight inspect`: what the runtime found, and a model's module
// tree with the shapes of one example forward.
import { readFileSync } from 'node:fs';
import { LanguageModel, type LoadOptions } from './model.js';
import { addonChoice, native, savedEntries } from './native.js';
import { discover, variantOf } from './install/libtorch.js';
import { PREBUILT, prebuiltDir } from './install/prebuilt.js';
import { describePython, exporterPython } from './install/python-env.js';
import type { ModuleEntry, Struct } from './manifest.js';
import { Graph } from './trace/graph.js';
import { refTo } from './trace/wire.js';

export interface DoctorReport {
  /** Whether the native addon loaded; when not, `addon` is why and the runtime fields are absent. */
  loaded: boolean;
  /** The torchsight.node loaded and how it was chosen, or the loader's error. */
  addon: string;
  /** The libtorch version the addon was compiled against. */
  libtorch?: string;
  /** Every libtorch found on the machine, best first, with the prebuilt variant it needs. */
  libtorchFound: { source: string; version: string; cuda: string | null; libDir: string; variant: string }[];
  /** Prebuilt packages installed. */
  prebuilts: string[];
  cuda?: { available: boolean; devices: number };
  blas: string;
  /** The kernels OpenBLAS chose for this CPU (OpenBLAS's own name), when OpenBLAS is libtorch's BLAS. */
  blasCore?: string;
  /** Set when OpenBLAS runs kernels older than the CPU: the OPENBLAS_CORETYPE to set instead. */
  blasAdvice?: string;
  threads?: { torch: number; interop: number; openblasEnv?: string; ompEnv?: string };
  node: string;
  /** The exporter's Python (`torchsight export`): interpreter, how it was chosen, torch and transformers. */
  python?: string;
}

/** The BLAS library mapped into this process (Linux): OpenBLAS, MKL, or the slow reference BLAS. */
function blasInUse(): string {
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    const libs = new Set(maps.split('\n').map((l) => l.split(/\s+/)[5]).filter((p) => p && /blas|mkl|lapack/i.test(p)));
    const names = [...libs].map((p) => p.split('/').pop()!);
    if (names.some((n) => /openblas/i.test(n))) return `OpenBLAS (${[...libs].find((p) => /openblas/i.test(p))})`;
    if (names.some((n) => /mkl/i.test(n))) return 'MKL';
    if (names.some((n) => /^libblas/.test(n))) return `reference BLAS (${[...libs].join(', ')}): slow; install libopenblas0-pthread`;
    return names.length ? names.join(', ') : 'none mapped yet';
  } catch {
    return 'unknown (no /proc/self/maps)';
  }
}

// OpenBLAS cores without AVX2: an OpenBLAS older than the CPU falls back to one of these
const PRE_AVX2 = /^(Prescott|Core2|Penryn|Dunnington|Nehalem|Sandybridge|Atom|Katmai|Coppermine|Northwood|Banias|Opteron|Barcelona|Bobcat|Bulldozer|Piledriver|Steamroller|Excavator)/i;

/**
 * When OpenBLAS runs kernels the CPU has outgrown (Debian 12's 0.3.21 picks Prescott's SSE3 ones
 * on a Sapphire Rapids), what to set: batched matmuls there ran 1.4x faster with SkylakeX's.
 */
export function blasAdvice(core: string | undefined, cpuFlags: ReadonlySet<string>): string | undefined {
  if (!core || !PRE_AVX2.test(core) || !cpuFlags.has('avx2') || !cpuFlags.has('fma')) return undefined;
  const avx512 = ['avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512cd'].every((f) => cpuFlags.has(f));
  const type = avx512 ? 'SkylakeX' : 'Haswell';
  return `OpenBLAS runs its ${core} kernels on a CPU with ${avx512 ? 'AVX-512' : 'AVX2'} (it is older than the CPU): set OPENBLAS_CORETYPE=${type} in the environment before node starts`;
}

function cpuFlags(): Set<string> {
  try {
    return new Set(/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1].trim().split(/\s+/) ?? []);
  } catch {
    return new Set();
  }
}

/** What the runtime found. Never throws: an addon that does not load is reported, with what was tried. */
export function doctor(): DoctorReport {
  const found = discover().found;
  const machine = {
    libtorchFound: found.map((t) => ({ source: t.source, version: t.version, cuda: t.cuda, libDir: t.libDir, variant: variantOf(t) })),
    prebuilts: Object.keys(PREBUILT).filter((v) => prebuiltDir(v)),
    node: process.version,
    python: describePython(exporterPython()),
  };
  let info: ReturnType<ReturnType<typeof native>['info']>;
  try {
    info = native().info();
  } catch (e) {
    return { loaded: false, addon: `not loaded: ${(e as Error).message}`, ...machine, blas: blasInUse() };
  }
  const choice = addonChoice()!;
  return {
    loaded: true,
    addon: `${choice.path} (${choice.how}${choice.libtorch ? `, on libtorch ${choice.libtorch.version} from ${choice.libtorch.source}` : ''})`,
    libtorch: info.torch,
    ...machine,
    cuda: { available: info.cudaAvailable, devices: info.cudaDevices },
    blas: blasInUse(),
    ...(info.blasCore ? { blasCore: info.blasCore, blasAdvice: blasAdvice(info.blasCore, cpuFlags()) } : {}),
    threads: { torch: info.threads, interop: info.interopThreads, openblasEnv: process.env.OPENBLAS_NUM_THREADS, ompEnv: process.env.OMP_NUM_THREADS },
  };
}

export function formatDoctor(r: DoctorReport): string {
  const found = r.libtorchFound.length
    ? r.libtorchFound.map((t, i) => `${i ? '          ' : 'found     '} ${t.version} ${t.cuda ? `CUDA ${t.cuda}` : 'CPU'} from ${t.source}: ${t.libDir} (needs ${t.variant})`)
    : ['found      no libtorch (see the README: Install)'];
  return [
    `addon      ${r.addon.replace(/\n/g, '\n           ')}`,
    ...(r.libtorch ? [`libtorch   ${r.libtorch} (compiled against)`] : []),
    ...found,
    `prebuilts  ${r.prebuilts.length ? r.prebuilts.join(', ') : 'none installed'}`,
    ...(r.cuda ? [`CUDA       ${r.cuda.available ? `available, ${r.cuda.devices} device(s)` : 'not available (CPU only)'}`] : []),
    `BLAS       ${r.blas}${r.blasCore ? `, ${r.blasCore} kernels` : ''}`,
    ...(r.blasAdvice ? [`           ${r.blasAdvice}`] : []),
    ...(r.threads
      ? [`threads    torch intra-op ${r.threads.torch}, inter-op ${r.threads.interop}; OPENBLAS_NUM_THREADS=${r.threads.openblasEnv ?? '(unset)'}, OMP_NUM_THREADS=${r.threads.ompEnv ?? '(unset)'}`]
      : []),
    `node       ${r.node}`,
    ...(r.python ? [`export     ${r.python}`] : []),
  ].join('\n');
}

/** The module tree with each module's output shapes from one forward of `text`. */
export async function inspect(dir: string, text = 'The Eiffel Tower is in the city of', options: Pick<LoadOptions, 'device' | 'onProgress'> = {}): Promise<string> {
  const model = await LanguageModel.load(dir, { device: options.device ?? 'cpu', onProgress: options.onProgress });
  try {
    const graph = new Graph(model.padId);
    const ids = model.tokenizer.encode(text);
    const reads = new Map<string, number>();
    const leaves = (s: Struct | null | undefined, out: string[] = []): string[] => {
      if (s?.kind === 'tensor' && s.site && !s.pruned) out.push(s.site);
      if (s?.kind === 'tuple') s.items.forEach((x) => leaves(x, out));
      return out;
    };
    // every site's shape, recorded as nodes of one trace and sent through the model's queue
    model.recordTrace(graph, ids, () => {
      for (const m of model.manifest.modules)
        for (const site of leaves(m.output)) {
          const r = graph.add('read', [], site, 0);
          const shape = graph.add('shape', [refTo(graph, r)], undefined, 0);
          graph.save(shape);
          reads.set(site, shape);
        }
    });
    const { raw } = await model.submit(graph, undefined, {});
    const shapes = new Map(savedEntries(raw.saved) as [number, number[]][]);
    const describe = (s: Struct | null | undefined): string => {
      if (!s) return 'never runs';
      if (s.kind === 'tensor') return s.site && reads.has(s.site) ? `[${shapes.get(reads.get(s.site)!)?.join(', ')}]` : s.pruned ? '(pruned)' : 'tensor';
      if (s.kind === 'tuple') return `(${s.items.map(describe).join(', ')})`;
      return s.kind === 'none' ? 'None' : s.type ?? s.kind;
    };
    const lines = [`${model.manifest.architecture} from ${dir}: ${ids.length} tokens of ${JSON.stringify(text)}`];
    for (const m of model.manifest.modules as ModuleEntry[]) {
      const depth = m.path === '' ? 0 : m.path.split('.').length;
      const name = m.path === '' ? '(model)' : m.path.slice(m.path.lastIndexOf('.') + 1);
      lines.push(`${'  '.repeat(depth)}${name}: ${m.type} -> ${describe(m.output)}`);
    }
    return lines.join('\n');
  } finally {
    await model.dispose();
  }
}
