// Generation with interventions at every step: the loop runs natively (one forward a step, the
// key/value-cache graph when the export has one); gen.all / gen.iter scope nodes to steps.
import type { LanguageModel } from './model.js';
import type { EnvoyOf } from './trace/types.js';
import type { Graph } from './trace/graph.js';

export interface GenerateOptions {
  /** new tokens at most (default 20) */
  maxNewTokens?: number;
  /** 0 (the default) is greedy */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** makes sampling reproducible */
  seed?: number;
  /** stop strings and/or token ids (the end-of-sequence token always stops) */
  stop?: string | number | Array<string | number>;
  /** aborts at the next step (or at the next module of a step an intervention applies at); rejects with the signal's reason */
  signal?: AbortSignal;
  /** each step's new tokens, as they come */
  onToken?: (event: TokenEvent) => void;
  /** after each step: steps done of maxNewTokens (generation may stop sooner, at a stop or end of text) */
  onProgress?: (progress: GenerateProgress) => void;
  /** use the key/value cache when the export has one (default true) */
  useCache?: boolean;
}

export interface GenerateProgress {
  /** steps done */
  step: number;
  maxNewTokens: number;
  /** step / maxNewTokens */
  fraction: number;
}

export interface TokenEvent {
  step: number;
  /** one token per row; -1 for rows that had already stopped */
  tokens: number[];
  /** each row's generated text so far */
  text: string[];
}

/** The second argument of generate's callback: scopes interventions to steps. */
export class GenerationScope<T = unknown> {
  /** @internal */
  constructor(
    private readonly graph: Graph,
    private readonly m: EnvoyOf<T>,
    private readonly maxNewTokens: number,
  ) {}

  /** Records `fn` once; its interventions apply at every step. Saved values become arrays (one per step). */
  all(fn: (m: EnvoyOf<T>) => unknown): void {
    this.scoped([0, -1], () => fn(this.m));
  }

  /**
   * Records `fn` once per step of `range` ([begin, end), or one step), each with that step's
   * number: `gen.iter([0, 3], (m, step) => ...)` applies at steps 0, 1 and 2.
   */
  iter(range: number | [number, number], fn: (m: EnvoyOf<T>, step: number) => unknown): unknown[] {
    const [begin, end] = typeof range === 'number' ? [range, range + 1] : range;
    if (!Number.isInteger(begin) || begin < 0 || !(end > begin))
      throw new Error(`gen.iter: range must be a step or [begin, end) with 0 <= begin < end, got ${JSON.stringify(range)}`);
    const last = Math.min(end, this.maxNewTokens);
    const out: unknown[] = [];
    for (let step = begin; step < last; step++) out.push(this.scoped([step, step + 1], () => fn(this.m, step)));
    return out;
  }

  private scoped<R>(steps: [number, number], body: () => R): R {
    const prev = this.graph.steps;
    this.graph.steps = steps;
    try {
      return body();
    } finally {
      this.graph.steps = prev;
    }
  }
}

export function normalizeStops(model: LanguageModel, stop: GenerateOptions['stop']): { ids: number[]; strings: string[] } {
  const list = stop === undefined ? [] : Array.isArray(stop) ? stop : [stop];
  const ids: number[] = [];
  const strings: string[] = [];
  for (const s of list) {
    if (typeof s === 'number') {
      if (!Number.isInteger(s) || s < 0 || s >= model.manifest.vocabSize) throw new Error(`generate: stop id ${s} is not a token id`);
      ids.push(s);
    } else if (typeof s === 'string' && s.length > 0) strings.push(s);
    else throw new Error('generate: stop must hold non-empty strings or token ids');
  }
  const eos = model.manifest.specialTokens?.eos;
  if (eos !== null && eos !== undefined) ids.push(eos);
  return { ids, strings };
}

/** Cuts a row at the first stop string, keeping the tokens up to the one that completed it. */
export function cutAtStop(model: LanguageModel, row: number[], strings: string[]): number[] {
  if (!strings.length) return row;
  for (let n = 1; n <= row.length; n++) {
    const text = model.tokenizer.decode(row.slice(0, n));
    if (strings.some((s) => text.includes(s))) return row.slice(0, n);
  }
  return row;
}

export function validateGenerateOptions(o: GenerateOptions): void {
  const check = (name: keyof GenerateOptions, ok: (v: number) => boolean, what: string) => {
    const v = o[name];
    if (v !== undefined && (typeof v !== 'number' || !ok(v))) throw new Error(`generate: ${name} must be ${what}, got ${String(v)}`);
  };
  check('maxNewTokens', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  check('temperature', (v) => v >= 0 && Number.isFinite(v), 'a number >= 0');
  check('topK', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  check('topP', (v) => v > 0 && v <= 1, 'in (0, 1]');
  check('seed', (v) => Number.isInteger(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER, 'a non-negative integer');
  if (o.onToken !== undefined && typeof o.onToken !== 'function') throw new Error('generate: onToken must be a function');
}
