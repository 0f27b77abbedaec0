// numpy/PyTorch index specs ('0', ':, -1', '..., 0:4', 'None', [null, -1]) in the wire form
// the native side applies: an int selects, "None" adds an axis, "..." is the ellipsis,
// [start, stop, step] (nulls for defaults) is a slice.
export type IndexItem = number | 'None' | '...' | [number | null, number | null, number | null];
export type IndexSpec = string | Array<number | null | string>;

function parseInt10(s: string, spec: string): number {
  if (!/^[+-]?\d+$/.test(s)) throw new Error(`index '${spec}': '${s}' is not an integer`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`index '${spec}': ${s} is too large`);
  return n;
}

function parseItem(raw: string, spec: string): IndexItem {
  const s = raw.trim();
  if (s === '...' ) return '...';
  if (s === 'None' || s === 'null') return 'None';
  if (s.includes(':')) {
    const parts = s.split(':');
    if (parts.length > 3) throw new Error(`index '${spec}': bad slice '${s}'`);
    // slice bounds clamp like Python's (x[0:10**20] is all of x)
    const bound = (p: string | undefined) => {
      if (p === undefined || p.trim() === '') return null;
      const t = p.trim();
      if (/^[+-]?\d+$/.test(t) && !Number.isSafeInteger(Number(t))) return t.startsWith('-') ? -Number.MAX_SAFE_INTEGER : Number.MAX_SAFE_INTEGER;
      return parseInt10(t, spec);
    };
    const [a, b, c] = [bound(parts[0]), bound(parts[1]), bound(parts[2])];
    if (c !== null && c <= 0) throw new Error(`index '${spec}': slice step must be positive`);
    return [a, b, c];
  }
  if (s === '') throw new Error(`index '${spec}': empty item`);
  return parseInt10(s, spec);
}

export function parseIndex(spec: IndexSpec): IndexItem[] {
  let items: IndexItem[];
  if (typeof spec === 'string') {
    // one trailing comma is Python's tuple syntax: x[1,] is x[1]
    const text = spec.trim().replace(/,\s*$/, '');
    items = text === '' ? [] : text.split(',').map((p) => parseItem(p, spec));
  } else if (Array.isArray(spec)) {
    items = spec.map((x) => {
      if (x === null) return [null, null, null] as IndexItem;
      if (typeof x === 'number') {
        if (!Number.isSafeInteger(x)) throw new Error(`index ${showSpec(spec)}: ${x} is not an integer`);
        return x;
      }
      if (typeof x === 'string') return parseItem(x, x);
      throw new Error(`index ${showSpec(spec)}: unsupported item ${typeof x === 'object' ? JSON.stringify(x) : String(x)} (expected an integer, null, or a string like '1:3', 'None', '...')`);
    });
  } else {
    throw new Error(`index spec must be a string like ':, -1' or an array like [null, -1], got ${typeof spec}`);
  }
  if (items.filter((x) => x === '...').length > 1) throw new Error(`index ${typeof spec === 'string' ? `'${spec}'` : showSpec(spec)}: only one '...' allowed`);
  // an empty spec is Python's x[()]: all of x, as a view (ATen refuses an empty index list)
  if (items.length === 0) return ['...'];
  return items;
}

function showSpec(spec: unknown[]): string {
  return `[${spec.map((x) => (x === null ? 'null' : typeof x === 'string' ? `'${x}'` : String(x))).join(', ')}]`;
}

// String specs parsed for the op methods: a trace usually indexes with the same few literals,
// and parsing one cost more than the rest of recording its node. The ops never change a result.
const parsed = new Map<string, IndexItem[]>();

/** parseIndex, remembering string specs (for internal callers that do not change the result). */
export function parseIndexShared(spec: IndexSpec): IndexItem[] {
  if (typeof spec !== 'string') return parseIndex(spec);
  let items = parsed.get(spec);
  if (!items) {
    items = parseIndex(spec);
    if (parsed.size >= 512) parsed.clear();
    parsed.set(spec, items);
  }
  return items;
}
