// tracer.cache(): every module's output and inputs (or those a filter picks) read and saved in
// one call, like nnsight's `tracer.cache()`. Only what is cached comes back: each entry keeps
// its proxies, which the trace's results turn into Tensors.
import type { Manifest, Struct } from '../manifest.js';
import { closest } from '../manifest.js';
import type { Envoy } from './envoy.js';
import { substitute, TraceProxy } from './proxy.js';

/**
 * Which modules a cache holds: a path (that module and every module under it, as nnsight's
 * `cache(modules=[...])` takes a module with its submodules), a RegExp tested on each path, or
 * an array of exact paths (each must exist).
 */
export type CacheFilter = string | RegExp | readonly string[];

export interface CacheOptions {
  /** cache each module's output (default true) */
  output?: boolean;
  /** cache each module's positional inputs (default true) */
  inputs?: boolean;
}

/**
 * One module's cached values. While the trace records they are proxies (usable in the graph);
 * once it has resolved, Tensors: `output` shaped like the module's output (a tuple is an
 * array), `inputs` one value per positional input. Items the export pruned are null.
 */
export class CacheEntry {
  readonly #output: unknown;
  readonly #inputs: unknown[];
  readonly #anchor: TraceProxy | undefined;
  #done: { output: unknown; inputs: unknown[] } | undefined;

  /** @internal */
  constructor(output: unknown, inputs: unknown[], anchor: TraceProxy | undefined) {
    this.#output = output;
    this.#inputs = inputs;
    this.#anchor = anchor;
  }

  #resolved(): { output: unknown; inputs: unknown[] } | undefined {
    // a sent graph's proxies are values (or say they are not yet, if read before it resolves)
    if (!this.#done && this.#anchor?.graph.sealed) this.#done = { output: substitute(this.#output), inputs: substitute(this.#inputs) as unknown[] };
    return this.#done;
  }

  get output(): any {
    return this.#resolved()?.output ?? this.#output;
  }

  get inputs(): any[] {
    return this.#resolved()?.inputs ?? this.#inputs;
  }
}

/** The cached modules by path (original paths; an array filter's own names as given). */
export type Cache = Record<string, CacheEntry>;

/** A leaf that can be read: a tensor with a hook site the export kept. */
function readable(s: Struct | null | undefined): boolean {
  if (!s) return false;
  if (s.kind === 'tensor') return !!s.site && !s.pruned;
  if (s.kind === 'tuple') return s.items.some(readable);
  return false;
}

/** Saves every readable leaf of `v` (an envoy's value for struct `s`); the rest is null. */
function take(v: unknown, s: Struct, found: { anchor?: TraceProxy }): unknown {
  if (s.kind === 'tensor') {
    if (!readable(s)) return null;
    const p = (v as TraceProxy).save();
    found.anchor ??= p;
    return p;
  }
  if (s.kind === 'tuple') {
    const view = v as Record<number, unknown>;
    return s.items.map((item, i) => (readable(item) ? take(view[i], item, found) : null));
  }
  return null;
}

/** The paths `filter` picks among the modules that ran (the root excluded, as in modulePaths()). */
export function cachePaths(manifest: Manifest, filter: CacheFilter | undefined): string[] {
  const ran = manifest.modules.filter((m) => m.path !== '' && m.output !== null).map((m) => m.path);
  if (filter === undefined) return ran;
  if (typeof filter === 'string') {
    const picked = ran.filter((p) => p === filter || p.startsWith(filter + '.'));
    if (!picked.length && !manifest.modules.some((m) => m.path === filter || m.path.startsWith(filter + '.'))) throw unknownPath(manifest, filter);
    return picked;
  }
  if (filter instanceof RegExp) return ran.filter((p) => {
    filter.lastIndex = 0; // a /g or /y RegExp keeps state between tests
    return filter.test(p);
  });
  if (Array.isArray(filter)) {
    for (const p of filter) if (typeof p !== 'string') throw new Error(`tracer.cache: paths must be strings, got ${typeof p}`);
    return [...filter];
  }
  throw new Error(`tracer.cache(filter): filter must be a module path, a RegExp or an array of paths, got ${typeof filter}`);
}

function unknownPath(manifest: Manifest, path: string): Error {
  const guess = closest(path, manifest.modules.map((m) => m.path));
  return new Error(`tracer.cache: module '${path}' not found${guess ? `; did you mean '${guess}'?` : ''}`);
}

/** The envoy at a dotted path (names as the tree has them, aliases included). */
function envoyAt(root: Envoy, path: string): Envoy {
  let e = root;
  for (const part of path.split('.')) e = e[part];
  return e;
}

/**
 * Records reads of `paths` under `root` (an envoy recording into the open trace and invoke)
 * and returns them as a Cache. A path that cannot be read (a module that never ran, or one
 * whose values the export pruned) throws when it was named, and is left out when a filter
 * picked it.
 */
export function recordCache(root: Envoy, manifest: Manifest, paths: string[], named: boolean, options: CacheOptions = {}): Cache {
  const wantOut = options.output ?? true;
  const wantIn = options.inputs ?? true;
  const cache: Cache = {};
  for (const path of paths) {
    const e = envoyAt(root, path);
    const entry = manifest.modules.find((m) => m.path === e.path);
    if (!entry) throw unknownPath(manifest, path);
    if (!readable(entry.output) && !entry.inputs.some(readable)) {
      if (named) throw new Error(`tracer.cache: module '${path}' has no values to cache (${entry.output ? 'the export pruned them' : 'it never ran in the exported forward'})`);
      continue;
    }
    const found: { anchor?: TraceProxy } = {};
    const output = wantOut && entry.output ? take(readable(entry.output) ? e.output : null, entry.output, found) : null;
    // `.inputs` reads every input, so a module with a pruned one reads its inputs one by one
    const all = wantIn && entry.inputs.every((s) => s.kind === 'none' || s.kind === 'tuple' || readable(s)) ? (e.inputs as unknown[]) : undefined;
    const inputs = wantIn ? entry.inputs.map((s, i) => (all ? take(all[i], s, found) : i === 0 && readable(s) ? take(e.input, s, found) : null)) : [];
    cache[path] = new CacheEntry(output, inputs, found.anchor);
  }
  return cache;
}
