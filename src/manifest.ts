// torchsight.json: what the exporter wrote about the model, and the module tree built from it.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ApplyRule } from './native.js';

export const MANIFEST_FORMAT = 'torchsight-model';
export const MANIFEST_VERSION = 1;

export type Struct =
  | { kind: 'tensor'; shape?: number[]; dtype?: string; site?: string; pruned?: boolean }
  | { kind: 'tuple'; items: Struct[] }
  | { kind: 'none' }
  | { kind: 'other'; type?: string };

export interface ModuleEntry {
  path: string;
  type: string;
  inputs: Struct[];
  output: Struct | null;
  calls: number;
  apply: ApplyRule & { outputFlattened?: boolean; reason?: string };
}

export interface Manifest {
  format: string;
  version: number;
  architecture: string;
  dtype: string;
  vocabSize: number;
  specialTokens: { bos: number | null; eos: number | null; pad: number | null };
  paddingSide: 'left' | 'right';
  outputNames: string[];
  config: Record<string, unknown> | null;
  exportedWith?: Record<string, string>;
  modules: ModuleEntry[];
  sites: string[];
  /** the key/value-cache step graph, when the export has one */
  step?: { file: string; cache: { layers: number; kvHeads: number; headDim: number }; weights: string };
}

export function readManifest(dir: string): Manifest {
  const file = join(dir, 'torchsight.json');
  if (!existsSync(file)) throw new Error(`${file}: not found (a torchsight model folder holds model.pt, tokenizer.json and torchsight.json)`);
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof m !== 'object' || m === null || m.format !== MANIFEST_FORMAT)
    throw new Error(`${file}: not a torchsight manifest (format is ${JSON.stringify((m as Manifest | null)?.format)}, expected '${MANIFEST_FORMAT}')`);
  if (m.version !== MANIFEST_VERSION)
    throw new Error(`${file}: manifest format version ${JSON.stringify(m.version)} is not supported (this torchsight reads version ${MANIFEST_VERSION}); re-export the model`);
  for (const key of ['modules', 'sites', 'outputNames'] as const)
    if (!Array.isArray(m[key])) throw new Error(`${file}: '${key}' must be an array`);
  if (!Number.isInteger(m.vocabSize) || m.vocabSize <= 0) throw new Error(`${file}: 'vocabSize' must be a positive integer`);
  return m;
}

export class ModuleNode {
  readonly children = new Map<string, ModuleNode>();
  constructor(
    readonly path: string,
    readonly name: string,
    readonly entry: ModuleEntry,
  ) {}
  /** Children named 0, 1, 2, ...: a ModuleList, indexable like an array. */
  get isList(): boolean {
    if (this.children.size === 0) return false;
    let i = 0;
    for (const k of this.children.keys()) if (k !== String(i++)) return false;
    return true;
  }
  get list(): ModuleNode[] {
    return [...this.children.values()];
  }
}

export function buildTree(m: Manifest): { root: ModuleNode; byPath: Map<string, ModuleNode> } {
  const byPath = new Map<string, ModuleNode>();
  let root: ModuleNode | undefined;
  for (const e of m.modules) {
    const name = e.path === '' ? '' : e.path.slice(e.path.lastIndexOf('.') + 1);
    const node = new ModuleNode(e.path, name, e);
    byPath.set(e.path, node);
    if (e.path === '') root = node;
    else {
      const parent = byPath.get(e.path.includes('.') ? e.path.slice(0, e.path.lastIndexOf('.')) : '');
      if (!parent) throw new Error(`torchsight.json: module '${e.path}' comes before its parent`);
      parent.children.set(name, node);
    }
  }
  if (!root) throw new Error('torchsight.json: no root module (path "")');
  return { root, byPath };
}

/** The module tree printed like PyTorch's repr of a module. */
export function formatTree(root: ModuleNode): string {
  const lines: string[] = [];
  const walk = (n: ModuleNode, label: string, depth: number) => {
    const pad = '  '.repeat(depth);
    const head = `${pad}${label}${n.entry.type}`;
    if (n.children.size === 0) {
      lines.push(`${head}()`);
      return;
    }
    lines.push(`${head}(`);
    for (const [k, c] of n.children) walk(c, `(${k}): `, depth + 1);
    lines.push(`${pad})`);
  };
  walk(root, '', 0);
  return lines.join('\n');
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

export function closest(name: string, options: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const o of options) {
    const dist = editDistance(name, o);
    if (dist < bestD) {
      bestD = dist;
      best = o;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 2)) ? best : undefined;
}
