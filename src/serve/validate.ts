// Checks a decoded request completely before it is queued: the packed graph word by word (the
// layout native/graph.cpp documents and parses: ops, arity, sites, references, invokes, steps,
// index specs) and the traces' inputs against the model (token ids, positions, masks, rows).
// The native parser checks all of it again when the request runs; this pass exists so that a bad
// request is answered at once with 400 and never takes a place in the queue. The ops, their
// arity and their argument kinds come from the op declarations (ops.json, generated into
// ops.gen.ts), the same table the tracer's methods are installed from, so an op added there is
// accepted here with no other change. It is the one function the server calls (`validateRequest`).
import { OP_DECLS, type OpDecl } from '../ops.gen.js';
import type { DecodedRequest } from '../remote/envelope.js';
import type { SourceOp } from '../native.js';

export const PACK_VERSION = 1;
const TAG = { null: 0, bool: 1, num: 2, str: 3, tensor: 4, ref: 5, list: 6 } as const;

/** What validation needs to know of the model a request is for. */
export interface ValidationTarget {
  /** the model's hook sites, by native id */
  sites: readonly string[];
  /** the operations of its modules' forwards (`.source`), whose sites a graph names by name */
  ops?: readonly SourceOp[];
  /** module paths the manifest gives an apply rule */
  applicable: ReadonlySet<string>;
  vocabSize: number;
  maxPositions: number;
}

export interface ValidationLimits {
  /** graph nodes at most */
  maxNodes: number;
  /** rows times tokens of all traces at most */
  maxTokens: number;
  /** new tokens of a generation at most */
  maxNewTokens: number;
}

/** A request the server refuses (400), naming the node when one is at fault. */
export class RequestError extends Error {
  readonly status = 400;
  readonly code = 'bad_graph';
  constructor(
    message: string,
    readonly node?: number,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Validates `req` for `target` within `limits`; throws RequestError. */
export function validateRequest(req: DecodedRequest, target: ValidationTarget, limits: ValidationLimits): void {
  const { code, strings, tensors } = req.graph;
  let tokens = 0;
  for (const t of req.traces) tokens += t.batch * t.seq;
  if (tokens > limits.maxTokens) throw new RequestError(`the request holds ${tokens} tokens; this server takes at most ${limits.maxTokens}`);
  if (code.length < 2 || code[0] !== PACK_VERSION) throw new RequestError(`graph: packed with another version of torchsight (expected version ${PACK_VERSION})`);
  const count = code[1];
  if (!Number.isInteger(count) || count < 0) throw new RequestError('graph: the node count must be a non-negative integer');
  if (count > limits.maxNodes) throw new RequestError(`graph: ${count} nodes; this server takes at most ${limits.maxNodes}`);
  if (count * 9 > code.length - 2) throw new RequestError(`graph: the packed code ends early (${count} nodes need at least ${count * 9} words)`);

  const opSites = opSitesOf(target);
  const known = (name: string) => target.sites.includes(name) || opSites.has(name);
  // traces: rows, inputs and node ranges
  const traceOf = new Int32Array(count);
  let expectBegin = 0;
  req.traces.forEach((t, ti) => {
    const where = `trace ${ti}`;
    for (let i = 0; i < t.batch * t.seq; i++) {
      const id = Number(t.ids[i]);
      if (id < 0 || id >= target.vocabSize)
        throw new RequestError(`${where}: token id ${id} at position ${i % t.seq} of row ${Math.floor(i / t.seq)} is outside the vocabulary [0, ${target.vocabSize})`);
      const p = Number(t.pos[i]);
      if (p < 0 || p >= target.maxPositions) throw new RequestError(`${where}: position id ${p} is outside [0, ${target.maxPositions})`);
      const m = Number(t.mask[i]);
      if (m !== 0 && m !== 1) throw new RequestError(`${where}: attention mask values must be 0 or 1, got ${m}`);
    }
    let next = 0;
    t.invokes.forEach(([s, c], k) => {
      if (s !== next || c < 1 || s + c > t.batch) throw new RequestError(`${where}: invoke ${k} must cover consecutive rows of the batch`);
      next += c;
    });
    if (t.begin !== expectBegin || t.end < t.begin || t.end > count)
      throw new RequestError(`${where}: node range [${t.begin}, ${t.end}) must follow the previous trace's and lie within the graph`);
    traceOf.fill(ti, t.begin, t.end);
    expectBegin = t.end;
  });
  if (expectBegin !== count) throw new RequestError('graph: every node must belong to a trace');
  if (req.kind === 'generate') {
    const g = req.generate!;
    if (g.maxNewTokens > limits.maxNewTokens) throw new RequestError(`generate: maxNewTokens ${g.maxNewTokens} exceeds this server's limit of ${limits.maxNewTokens}`);
    const seq = req.traces[0].seq;
    if (seq + g.maxNewTokens > target.maxPositions)
      throw new RequestError(`generate: the prompt (${seq} tokens) plus maxNewTokens (${g.maxNewTokens}) exceeds the model's ${target.maxPositions} positions`);
  }

  // nodes
  let i = 2;
  let node = 0;
  let op = '';
  const fail = (msg: string): never => {
    throw new RequestError(`node ${node} (${op || '?'}): ${msg}`, node);
  };
  const word = () => {
    if (i >= code.length) fail('the packed code ends early');
    return code[i++];
  };
  const integer = (lo: number, hi: number, what: string) => {
    const d = word();
    if (!Number.isInteger(d) || d < lo || d > hi) fail(`'${what}' must be an integer in [${lo}, ${hi}]`);
    return d;
  };
  const str = (k: number) => {
    const s = strings[k];
    if (typeof s !== 'string') fail(`string ${k} is not in the table`);
    return s;
  };
  /** an argument; returns its constant value (lists of constants too) or undefined for a reference */
  const arg = (depth: number): unknown => {
    if (depth > 16) fail('argument nested too deeply');
    const tag = integer(0, 6, 'argument tag');
    switch (tag) {
      case TAG.null:
        return null;
      case TAG.bool:
        return integer(0, 1, 'bool') === 1;
      case TAG.num:
        return word();
      case TAG.str:
        return str(integer(0, 2 ** 31 - 1, 'string'));
      case TAG.tensor: {
        const k = integer(0, 2 ** 31 - 1, 'tensor');
        if (k >= tensors.length) fail(`tensor ${k} is not in the table`);
        return TENSOR;
      }
      case TAG.ref: {
        const d = word();
        if (!Number.isInteger(d) || d < 0 || d >= node) fail(`a reference must point to an earlier node, got ${d}`);
        if (traceOf[d] > traceOf[node]) fail('refers to a node of a later trace');
        return REF;
      }
      default: {
        const n = integer(0, 4096, 'list length');
        const items: unknown[] = [];
        for (let k = 0; k < n; k++) items.push(arg(depth + 1));
        return items;
      }
    }
  };
  for (; node < count; node++) {
    op = '';
    const opStr = integer(0, 2 ** 31 - 1, 'op');
    const site = integer(-(2 ** 21), 2 ** 31 - 1, 'site');
    integer(0, 2 ** 20, 'occ');
    const invoke = integer(-1, 4096, 'invoke');
    integer(0, 1, 'save');
    const sb = integer(0, 2 ** 20, 'steps');
    const se = integer(-1, 2 ** 20, 'steps');
    const loc = integer(-1, 2 ** 31 - 1, 'loc');
    if (loc >= 0) str(loc);
    op = str(opStr).slice(0, 64);
    const decl = Object.hasOwn(OP_DECLS, op) ? OP_DECLS[op] : undefined;
    const kind = op === 'read' || op === 'write' || op === 'apply' || op === 'skip' || Object.hasOwn(GRAD_ARGS, op) ? op : decl ? 'op' : fail('unknown op');
    if (se >= 0 && se <= sb) fail("'steps' must be [begin, end] with 0 <= begin < end, or end -1");
    const nargs = integer(0, 64, 'argument count');
    const args: unknown[] = [];
    for (let k = 0; k < nargs; k++) args.push(arg(0));
    const trace = req.traces[traceOf[node]];
    if (invoke >= 0 && invoke >= trace.invokes.length) fail(`invoke ${invoke} does not exist in its trace`);
    if (kind === 'read' || kind === 'write') {
      if (site === -1) fail("needs a 'site'");
      if (site >= 0 && site >= target.sites.length) fail(`site ${site} does not exist in this model`);
      if (site <= -2 && !known(str(-2 - site))) fail(`site '${str(-2 - site).slice(0, 200)}' does not exist in this model`);
      if (kind === 'read' && nargs !== 0) fail('read takes no arguments');
      if (kind === 'write' && nargs !== 1) fail('write takes one value');
    } else if (site !== -1) fail('only read and write nodes have a site');
    if (kind === 'skip') {
      // skip(outputSite, inputSite): a module's own hook sites, by name
      if (nargs !== 2 || typeof args[0] !== 'string' || typeof args[1] !== 'string') fail("skip needs a module's output site and input site, by name");
      for (const s of args as string[]) if (!target.sites.includes(s)) fail(`site '${s.slice(0, 200)}' does not exist in this model`);
    }
    if (kind === 'apply') {
      if (typeof args[0] !== 'string') fail('apply needs a module path first');
      if (!target.applicable.has(args[0] as string)) fail(`module '${(args[0] as string).slice(0, 200)}' cannot be applied (no apply rule in the manifest)`);
      if (nargs < 2) fail('apply needs at least one input');
    }
    if (Object.hasOwn(GRAD_ARGS, op) && (nargs !== GRAD_ARGS[op] || args[0] !== REF)) fail(`${op} takes ${GRAD_ARGS[op]} argument(s), the first a graph value`);
    if (decl) checkOpArgs(decl, args, fail);
  }
  if (i !== code.length) throw new RequestError(`graph: ${i} words of code read, more follow the last node`);
}

/** Gradient nodes (native/autograd.cpp): `.backward()`, `.grad` and `.grad = v`, with their argument counts. */
const GRAD_ARGS: Readonly<Record<string, number>> = { backward: 1, grad: 1, setGrad: 2 };

const TENSOR = Symbol('tensor');
const REF = Symbol('ref');

/** Each declared op's node shape: how many arguments it takes, and where a kind is checked. */
interface NodeShape {
  min: number;
  max: number;
  /** what the message says the arguments are */
  names: string;
  /** argument position -> the declared kind checked there */
  checks: [number, 'number' | 'index'][];
}

/**
 * A node's arguments as the tracer records them: a method's (and a custom reader's) are self
 * then its parameters in order, trailing defaults dropped (shape-like varargs: self and one
 * list); a static op's (cat, stack) are its parameters.
 */
const SHAPES: ReadonlyMap<OpDecl, NodeShape> = new Map(
  Object.values(OP_DECLS).map((d) => {
    const self = d.binding === 'static' ? 0 : 1;
    const params = d.varargs ? d.params.slice(0, 1) : d.params;
    const checks = d.js.flatMap((k, i) => (k && i < params.length ? [[self + i, k] as [number, 'number' | 'index']] : []));
    const names = [...(self ? ['self'] : []), ...params].join(', ');
    return [d, { min: 1, max: self + params.length, names, checks }];
  }),
);

function checkOpArgs(decl: OpDecl, args: unknown[], fail: (m: string) => never): void {
  const shape = SHAPES.get(decl)!;
  if (args.length < shape.min || args.length > shape.max)
    fail(`expected ${shape.min === shape.max ? shape.min : `${shape.min} to ${shape.max}`} argument(s) (${shape.names}), got ${args.length}`);
  if (decl.binding === 'static' && !Array.isArray(args[0])) fail('the first argument must be a list of tensors');
  for (const [at, kind] of shape.checks) {
    if (at >= args.length) continue;
    const v = args[at];
    if (kind === 'number') {
      if (v !== null && typeof v !== 'number') fail(`argument ${at} must be a number`);
    } else if (v !== REF) checkIndexSpec(v, fail);
  }
}

/** The wire form of an index spec (indexspec.ts): ints, 'None', '...' (once), [start, stop, step] slices. */
function checkIndexSpec(spec: unknown, fail: (m: string) => never): void {
  if (!Array.isArray(spec) || spec.length > 64) fail('an index spec must be a list of at most 64 items');
  let ellipses = 0;
  for (const x of spec as unknown[]) {
    if (typeof x === 'number' && Number.isSafeInteger(x)) continue;
    if (x === 'None') continue;
    if (x === '...') {
      if (++ellipses > 1) fail("index: only one '...' allowed");
      continue;
    }
    if (Array.isArray(x) && x.length === 3 && x.every((b) => b === null || (typeof b === 'number' && Number.isSafeInteger(b)))) {
      if (x[2] !== null && (x[2] as number) <= 0) fail('index: slice step must be positive');
      continue;
    }
    fail(`index: bad item ${typeof x === 'symbol' ? 'reference' : JSON.stringify(x)?.slice(0, 40)}`);
  }
}

// the op sites of a target, as a set made once per listing
const opSiteSets = new WeakMap<readonly SourceOp[], ReadonlySet<string>>();
function opSitesOf(target: ValidationTarget): ReadonlySet<string> {
  if (!target.ops) return new Set();
  let set = opSiteSets.get(target.ops);
  if (!set) {
    const s = new Set<string>();
    for (const op of target.ops) {
      s.add(op.output);
      for (const i of op.inputs) if (i) s.add(i);
    }
    opSiteSets.set(target.ops, (set = s));
  }
  return set;
}
