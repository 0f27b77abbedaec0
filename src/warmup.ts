// The load-time warm-up: a few forwards (and short generations) before load resolves, so the
// first trace runs on graphs TorchScript has already profiled and optimized.
import type { Struct } from './manifest.js';
import type { ModelRuntime } from './runtime.js';
import { Graph } from './trace/graph.js';
import { markSaved, substitute, TraceProxy } from './trace/proxy.js';
import { Tensor } from './tensor.js';

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

/**
 * V8 optimizes a function only after it has run for a while, and most of the tracer runs a
 * few times per trace: for the first thousands of traces it would record with unoptimized
 * code. So this records (and sends nothing of) 2500 traces of an intervention like a user's:
 * read the first output of up to 12 modules spread over the model, patch one in place with a
 * Tensor, return them all. A model whose structure this cannot record is simply not warmed.
 */
export function warmRecording(rt: ModelRuntime): void {
  const ids = Array.from({ length: Math.max(1, Math.min(8, (rt.maxPositions || 64) - 4)) }, (_, i) => (i + 1) % rt.manifest.vocabSize);
  const readable = (s: Struct | null | undefined): s is Leaf => s?.kind === 'tensor' && !!s.site && !s.pruned;
  const eligible = rt.manifest.modules.filter(
    (m) => m.path !== '' && m.calls > 0 && (readable(m.output) || (m.output?.kind === 'tuple' && readable(m.output.items[0]))),
  );
  const n = Math.min(12, eligible.length);
  if (n === 0) return;
  const paths = Array.from({ length: n }, (_, k) => eligible[Math.floor((k * eligible.length) / n)].path.split('.'));
  // a list of blocks (ModuleList) whose every block is readable is also read with map()
  const byPath = new Set(eligible.map((m) => m.path));
  const listAt = eligible.map((m) => m.path.split('.')).find((segs) => segs.some((x) => /^\d+$/.test(x)));
  const list = listAt?.slice(0, listAt.findIndex((x) => /^\d+$/.test(x)));
  const listLen = list ? rt.tree.byPath.get(list.join('.'))?.children.size ?? 0 : 0;
  const mapList = !!list && listLen > 0 && Array.from({ length: listLen }, (_, i) => byPath.has([...list, i].join('.'))).every(Boolean);
  const first = (o: unknown) => (o instanceof TraceProxy ? o : (o as unknown[])[0]) as TraceProxy;
  const at = (m: unknown, segs: string[]) => segs.reduce((e, seg) => (e as Record<string, unknown>)[seg], m);
  const patch = Tensor.from([0]);
  const body = (m: unknown) => {
    const out: unknown[] = [];
    for (let k = 0; k < paths.length; k++) {
      const v = first((at(m, paths[k]) as { output: unknown }).output);
      if (k === 0) v.index(':, -1').add_(patch);
      out.push(v);
    }
    if (mapList) out.push((at(m, list!) as { map(f: (b: { output: unknown }) => unknown): unknown[] }).map((b) => first(b.output)));
    return out;
  };
  try {
    for (let i = 0; i < 2500; i++) {
      const graph = new Graph(rt.padId);
      const result = rt.recordTrace(graph, ids, body);
      markSaved(result);
      graph.request(rt.native, true);
      for (const p of graph.proxies) p?.resolve(null);
      substitute(result);
    }
  } catch {
    // an export this does not fit only loses the warm-up
  } finally {
    patch.dispose();
  }
}
