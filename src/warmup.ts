// The load-time warm-up: a few forwards (and short generations) before load resolves, so the
// first trace runs on graphs TorchScript has already profiled and optimized. (Load used to
// also record 2,500 unsent traces so V8 had optimized the tracer: measured, that cost ~1 s at
// load to save ~2 ms on the first trace and ~0.2 s over the first 1,000, so it was dropped.)
import type { Struct } from './manifest.js';
import type { ModelRuntime } from './runtime.js';
import { Graph } from './trace/graph.js';

type Leaf = Extract<Struct, { kind: 'tensor' }>;

/**
 * TorchScript's profiling executor (CUDA) profiles a graph at its first run and optimizes it at
 * the second; each model has two graphs per forward kind (with its hook sites, and without them
 * for forwards no intervention touches), so both are run twice here: plain forwards, forwards
 * that read the logits' site, and with a key/value-cache graph, two three-step greedy
 * generations (prefill and decode), on 8 tokens. Every run goes through the model's queue.
 */
export async function warmForwards(rt: ModelRuntime, onRun?: (done: number, total: number) => void): Promise<void> {
  const nm = rt.native;
  const maxPos = rt.maxPositions || 64;
  const ids = Array.from({ length: Math.max(1, Math.min(8, maxPos - 4)) }, (_, i) => (i + 1) % rt.manifest.vocabSize);
  // a site every forward fires: the first tensor of the model's own output
  const root = rt.manifest.modules.find((m) => m.path === '');
  const first = (s: Struct | null | undefined): Leaf | undefined => (s?.kind === 'tensor' ? s : s?.kind === 'tuple' ? s.items.map(first).find(Boolean) : undefined);
  const leaf = first(root?.output);
  const site = leaf?.site && !leaf.pruned ? leaf.site : undefined;
  const runs: { read: boolean; generate: boolean }[] = [];
  for (const read of site ? [false, true] : [false]) {
    runs.push({ read, generate: false }, { read, generate: false });
    if (nm.hasCache) runs.push({ read, generate: true });
  }
  for (let i = 0; i < runs.length; i++) {
    onRun?.(i, runs.length);
    const { read, generate } = runs[i];
    const graph = new Graph(rt.padId);
    rt.recordTrace(graph, ids, () => {
      if (read) graph.withSteps(generate ? [0, -1] : [0, 1], () => graph.add('read', [], site, 0));
    });
    // a site list keeps these on the graph with every site (which they warm), rather than
    // building a site graph for the logits' site
    const request = { ...graph.request(nm), recordSites: read };
    const start: () => Promise<unknown> = generate
      ? () => nm.generate(request, { maxNewTokens: 3, temperature: 0, topK: 0, topP: 1, seed: 0, stopIds: [], padId: rt.padId, useCache: true })
      : () => nm.run(request);
    await rt.queue.run({}, start, () => undefined);
  }
}

