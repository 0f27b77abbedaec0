// A/B of two builds of torchsight's JavaScript on the tiny model, call by call in one process:
//   npx tsx bench/ab.ts <base dist folder> [new dist folder, default ./dist]
// Both load the same addon and model folder. On a machine whose speed drifts by more than the
// difference being measured (this VM's does), only paired differences taken within a few
// forwards of each other show a change of tens of microseconds; two separate runs do not.
// The build loaded second ran 50-90 us faster a trace here whatever it was (the same build
// against itself shows it), so the comparison runs twice, once in each order, in two processes,
// and the change is the mean of the two: the order's bias cancels.
// A base build of an earlier commit: git worktree add /tmp/base REV, then in /tmp/base link
// node_modules, build and models to this checkout's and run npx tsc -p tsconfig.json.
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const ROOT = join(import.meta.dirname, '..');
const dir = join(ROOT, 'models', 'gpt2');
const [baseDist, newDist = join(ROOT, 'dist')] = process.argv.slice(2);
if (!baseDist) throw new Error('usage: npx tsx bench/ab.ts <base dist folder> [new dist folder]');
const N = Number(process.env.N ?? 300);
const ids = Array.from({ length: 16 }, (_, i) => (i * 37) % 500);

async function setup(dist: string) {
  const { LanguageModel, Tensor, setNumThreads } = await import(join(resolve(dist), 'index.js'));
  const { native } = await import(join(resolve(dist), 'native.js'));
  const { makeBatch } = await import(join(resolve(dist), 'inputs.js'));
  const { PackWriter } = await import(join(resolve(dist), 'trace', 'wire.js'));
  setNumThreads(Number(process.env.BENCH_THREADS ?? 1));
  const model = await LanguageModel.load(dir, { device: 'cpu' });
  const patch = Tensor.from(Array.from({ length: 64 }, (_, i) => Math.cos(i) * 0.01));
  // the bench's intervention: 12 block outputs saved, one patched in place
  const intervention = (m: any) => {
    m.transformer.h[6].output[0].index(':, -1').add_(patch);
    return m.transformer.h.map((b: any) => b.output[0]);
  };
  const plain = await native().loadModel(join(dir, 'plain.pt'), 'cpu', '');
  plain.configure({ vocabSize: model.manifest.vocabSize });
  const trace = { ...makeBatch([{ ids, mask: ids.map(() => 1) }], model.padId), invokes: [[0, 1]], begin: 0, end: 0, stop: false };
  const empty = new PackWriter().finish(0); // no nodes
  return {
    model,
    plain: () => plain.run({ traces: [trace], graph: empty }),
    trace12: async () => {
      const acts = await model.trace(ids, intervention);
      acts.forEach((t: { dispose(): void }) => t.dispose());
    },
    emptyTrace: () => model.trace(ids, () => undefined),
  };
}

if (!process.env.AB_FIRST) {
  // the parent: one child a order, then the mean of their paired differences
  const run = (first: 'base' | 'new') =>
    JSON.parse(execFileSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env: { ...process.env, AB_FIRST: first }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').at(-1)!) as Record<string, number>;
  const a = run('base');
  const b = run('new');
  for (const k of Object.keys(a))
    console.log(`${k.padEnd(32)} ${((a[k] + b[k]) / 2).toFixed(1)} us (base loaded first ${a[k].toFixed(1)}, new first ${b[k].toFixed(1)}; medians of ${N} paired differences)`);
  process.exit(0);
}

const first = process.env.AB_FIRST === 'new' ? await setup(newDist) : undefined;
const A = await setup(baseDist);
const B = first ?? (await setup(newDist));
const fns: Record<string, () => Promise<unknown>> = {
  plain: A.plain,
  baseTrace12: A.trace12,
  newTrace12: B.trace12,
  baseEmptyTrace: A.emptyTrace,
  newEmptyTrace: B.emptyTrace,
};
const keys = Object.keys(fns);
const samples: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
for (let i = 0; i < 30; i++) for (const k of keys) await fns[k]();
// the order turns every iteration, so no kind always follows the same other kind
for (let i = 0; i < N; i++)
  for (let j = 0; j < keys.length; j++) {
    const k = keys[(i + j) % keys.length];
    const t0 = performance.now();
    await fns[k]();
    samples[k].push((performance.now() - t0) * 1000);
  }
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const paired = (a: string, b: string) => median(samples[a].map((x, i) => x - samples[b][i]));
const out: Record<string, number> = {};
for (const [a, b] of [
  ['baseTrace12', 'plain'],
  ['newTrace12', 'plain'],
  ['newTrace12', 'baseTrace12'],
  ['baseEmptyTrace', 'plain'],
  ['newEmptyTrace', 'plain'],
  ['newEmptyTrace', 'baseEmptyTrace'],
])
  out[`${a} - ${b}`] = paired(a, b);
await A.model.dispose();
await B.model.dispose();
console.log(JSON.stringify(out));
