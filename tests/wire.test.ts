// The packed graph: the words the encoder writes are the layout native/request.cpp reads.
import { describe, expect, it } from 'vitest';
import { Tensor, TraceProxy } from '../src/index.js';
import type { NativeModel } from '../src/native.js';
import { Graph } from '../src/trace/graph.js';
import { refTo, PACK_VERSION } from '../src/trace/wire.js';
import { nodesOf, packGraph, unpackNodes } from './support/wire.js';

describe('packGraph', () => {
  it('writes the documented layout: header, node fields, tagged arguments, shared tables', () => {
    const t = Tensor.from([1, 2]);
    const p = packGraph(
      [
        { id: 0, op: 'read', args: [], site: 'a:output:0', save: true },
        { id: 1, op: 'index', args: [{ ref: 0 }, [null, [1, -1.5], true, 'x']], invoke: 1, steps: [2, -1] },
        { id: 2, op: 'add', args: [{ ref: 1 }, t.native], site: undefined, loc: 'here.ts:3:4' },
        { id: 3, op: 'write', args: [7n as never], site: 'b:input:0', occ: 2 },
      ],
      new Map([['a:output:0', 5]]),
    );
    expect(p.strings).toEqual(['read', 'index', 'x', 'add', 'here.ts:3:4', 'b:input:0', 'write']);
    expect(p.tensors).toEqual([t.native]);
    expect(Array.from(p.code)).toEqual([
      PACK_VERSION, 4,
      // op, site, occ, invoke, save, stepBegin, stepEnd, loc, nargs
      0, 5, 0, -1, 1, 0, 1, -1, 0,
      1, -1, 0, 1, 0, 2, -1, -1, 2,
      /* ref 0 */ 5, 0, /* list of 4 */ 6, 4, /* null */ 0, /* list [1, -1.5] */ 6, 2, 2, 1, 2, -1.5, /* true */ 1, 1, /* 'x' */ 3, 2,
      3, -1, 0, -1, 0, 0, 1, 4, 2,
      5, 1, /* tensor 0 */ 4, 0,
      // a site the table does not know goes by name: -2 - its string index
      6, -2 - 5, 2, -1, 0, 0, 1, -1, 1,
      2, 7,
    ]);
  });

  it('refuses what it cannot encode, naming the node', () => {
    expect(() => packGraph([{ id: 1, op: 'add', args: [] }])).toThrow('node 0 (add): ids must be 0, 1, 2, ... in order');
    expect(() => packGraph(['x' as never])).toThrow('node 0 (?): must be an object');
    expect(() => packGraph([{ id: 0, op: 'add', args: [{}] }])).toThrow(/node 0 \(add\): an argument must be/);
    expect(() => packGraph([{ id: 0, op: 'add', args: [() => 1] as never }])).toThrow(/an argument must be/);
    expect(() => packGraph([{ id: 0, op: 'add', args: [2n ** 60n] as never }])).toThrow(/bigint out of range/);
    expect(() => packGraph([{ id: 0, op: 'read', args: [], site: 3 as never }])).toThrow(/'site' must be a string/);
    expect(() => packGraph([{ id: 0, op: 'add', args: [], steps: [1] as never }])).toThrow(/'steps' must be \[begin, end\]/);
    expect(() => packGraph([{ id: 0, op: 'add', args: [], occ: '1' as never }])).toThrow(/'occ' must be an integer/);
    let deep: unknown = 1;
    for (let i = 0; i < 20; i++) deep = [deep];
    expect(() => packGraph([{ id: 0, op: 'add', args: [deep] }])).toThrow(/nested too deeply/);
    expect(() => packGraph('nodes' as never)).toThrow(/expected \{traces: \[\], nodes: \[\]\}/);
  });
});

// node 0's words start after the layout's version and node count
const FIRST_NODE = 2;

describe('the tracer writes packed words as it records', () => {
  const nm = { sites: () => ['x:output:0', 'a:output:0'] } as unknown as NativeModel;

  it('gives the words packGraph gives for the same nodes, and reads them back as nodes', () => {
    const t = Tensor.from([1, 2]);
    const g = new Graph(0);
    expect(g.add('read', [], 'a:output:0', 0)).toBe(0);
    g.withSteps([1, 3], () => {
      // a recording graph refers to its nodes through proxies (refTo), never a plain {ref}
      expect(() => g.add('index', [{ ref: 0 }])).toThrow(/index: an argument must be/);
      expect(g.add('index', [refTo(g, 0), [null, [1, -1.5], true, 'x']], undefined, 1)).toBe(1);
    });
    // an argument that cannot be encoded throws and leaves nothing of its node behind
    expect(() => g.add('add', [refTo(g, 1), t, {}])).toThrow(/add: an argument must be a number, boolean, null, string, array, Tensor or proxy; got \[object Object\]/);
    expect(() => g.add('add', [t, 2n ** 60n])).toThrow(/add: bigint out of range/);
    expect(g.size).toBe(2);
    expect(g.add('add', [refTo(g, 1), t, 7n], 'not:a:site')).toBe(2);
    g.save(0);
    expect(g.isSaved(0)).toBe(true);
    expect(g.isSaved(1)).toBe(false);
    const nodes = nodesOf(g).nodes;
    expect(nodes).toEqual([
      { id: 0, op: 'read', args: [], occ: 0, save: true, site: 'a:output:0', invoke: 0 },
      { id: 1, op: 'index', args: [{ ref: 0 }, [null, [1, -1.5], true, 'x']], occ: 0, save: false, invoke: 1, steps: [1, 3] },
      { id: 2, op: 'add', args: [{ ref: 1 }, t.native, 7], occ: 0, save: false, site: 'not:a:site' },
    ]);
    // packed by packGraph and read back, the nodes are the same
    expect(unpackNodes(packGraph(nodes))).toEqual(nodes);
    // what is sent: the site the model has goes by its id, the one it lacks by name (the
    // native side names it in its error); everything else is the recorded words
    const sent = g.request(nm).graph;
    expect(sent.code[FIRST_NODE + 1]).toBe(1);
    expect(sent.tensors).toEqual([t.native]);
    const back = unpackNodes(sent);
    expect(back.map((n) => n.site)).toEqual([undefined, undefined, 'not:a:site']);
    expect(back.map(({ site: _, ...n }) => n)).toEqual(nodes.map(({ site: _, ...n }) => n));
  });

  it('writes a site given by the model\'s id as is, and reads it back by name when given the names', () => {
    const g = new Graph(0);
    g.add('read', [], 1, 0); // envoys record by id: no string for the site, nothing to patch
    expect(nodesOf(g, nm.sites()).nodes[0].site).toBe('a:output:0');
    expect(nodesOf(g).nodes[0].site).toBeUndefined();
    const sent = g.request(nm).graph;
    expect(sent.code[FIRST_NODE + 1]).toBe(1);
    expect(sent.strings).toEqual(['read']);
  });

  it('refuses a proxy from another trace, and nodes once the trace is sent', () => {
    const g = new Graph(0);
    const other = new Graph(0);
    const p = new TraceProxy(other, other.add('read', [], 'a:output:0'), 0);
    expect(() => g.add('add', [p])).toThrow(/a proxy from another trace was used/);
    expect(g.size).toBe(0);
    g.seal();
    expect(() => g.add('read', [], 'a:output:0')).toThrow(/read: this trace has already been sent/);
  });
});
