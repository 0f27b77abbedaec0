// Aliases for module paths, nnsight's `rename`: `{ 'transformer.h': 'layers', mlp: 'ffn' }` lets
// one script name GPT-2's and Llama's modules alike. An alias is another name for the same
// module node (so the same envoy, the same hook sites); the original paths keep working.
// A dotted key (or any exact module path) is mounted at the root (or at the alias's own dotted
// parent); a plain name that is no root child renames that child wherever it occurs.
import { closest, type ModuleNode } from '../manifest.js';
import { RESERVED, type ModuleDesc } from './types.js';

/** Module path (or child name) -> alias. */
export type Rename = Readonly<Record<string, string>>;

type Tree = { root: ModuleNode; byPath: Map<string, ModuleNode> };

// a tree's aliases, per parent node: trees are per loaded model, so a model's renames stay its own
const aliasMaps = new WeakMap<ModuleNode, Map<string, ModuleNode>>();
const EMPTY: ReadonlyMap<string, ModuleNode> = new Map();

/** The aliases mounted on `node` (name -> the module it stands for). */
export function aliasesOf(node: ModuleNode): ReadonlyMap<string, ModuleNode> {
  return aliasMaps.get(node) ?? EMPTY;
}

const NAME = /^[A-Za-z_$][\w$]*$/;

/** The node at a dotted path, following aliases already mounted. */
function nodeAt(tree: Tree, path: string): ModuleNode | undefined {
  if (path === '') return tree.root;
  let n: ModuleNode | undefined = tree.root;
  for (const part of path.split('.')) {
    n = n.children.get(part) ?? aliasesOf(n).get(part);
    if (!n) return undefined;
  }
  return n;
}

function mount(parent: ModuleNode, name: string, target: ModuleNode, key: string): void {
  const where = parent.path ? `module '${parent.path}'` : 'the root';
  if (RESERVED[name as keyof typeof RESERVED]) throw new Error(`rename: '${key}' -> '${name}': '${name}' is a name every envoy has (output, input, path, ...); choose another`);
  const taken = parent.children.get(name) ?? aliasesOf(parent).get(name);
  if (taken && taken !== target)
    throw new Error(`rename: '${key}' -> '${name}' clashes with '${taken.path}', which ${where} already has as '${name}'`);
  if (parent === target || parent.path.startsWith(target.path + '.') || target.path === '')
    throw new Error(`rename: '${key}' -> '${name}' would mount '${target.path}' inside itself`);
  let m = aliasMaps.get(parent);
  if (!m) aliasMaps.set(parent, (m = new Map()));
  m.set(name, target);
}

/**
 * Mounts `rename`'s aliases on `tree`. Throws naming the entry for an unknown path, an alias
 * that is no identifier, a clash with a module or alias of that name, or a reserved name.
 */
export function applyRename(tree: Tree, rename: Rename | undefined): void {
  if (rename === undefined) return;
  if (rename === null || typeof rename !== 'object' || Array.isArray(rename)) throw new Error('rename must be an object of module path -> alias');
  for (const [key, alias] of Object.entries(rename)) {
    if (typeof alias !== 'string' || !NAME.test(alias.slice(alias.lastIndexOf('.') + 1)) || !alias.split('.').every((p) => /^[\w$]+$/.test(p)))
      throw new Error(`rename: the alias of '${key}' must be a name (or a dotted path of names), got ${JSON.stringify(alias)}`);
    const dot = alias.lastIndexOf('.');
    const name = alias.slice(dot + 1);
    const target = key === '' ? undefined : tree.byPath.get(key);
    if (target) {
      const parentPath = dot < 0 ? '' : alias.slice(0, dot);
      const parent = nodeAt(tree, parentPath);
      if (!parent) throw new Error(`rename: '${key}' -> '${alias}': no module '${parentPath}' to put '${name}' in`);
      mount(parent, name, target, key);
      continue;
    }
    const owners = key.includes('.') ? [] : [...tree.byPath.values()].filter((n) => n.children.has(key));
    if (!owners.length || dot >= 0) {
      const guess = closest(key, tree.byPath.keys());
      throw new Error(
        dot >= 0 && owners.length
          ? `rename: '${key}' names a child module wherever it occurs, so its alias must be a plain name, got '${alias}'`
          : `rename: module '${key}' not found${guess ? `; did you mean '${guess}'?` : ''} (a key is a module path, or the name of a child module)`,
      );
    }
    for (const o of owners) mount(o, name, o.children.get(key)!, key);
  }
}

/** Every path an alias makes (each module under an alias, by each way it is reached). */
export function aliasPaths(root: ModuleNode): string[] {
  const out: string[] = [];
  const walk = (n: ModuleNode, path: string, viaAlias: boolean, depth: number) => {
    if (viaAlias) out.push(path);
    if (depth > 64) return; // mount() forbids cycles; this bounds a pathological chain of aliases
    const at = (k: string) => (path ? `${path}.${k}` : k);
    for (const [k, c] of n.children) walk(c, at(k), viaAlias, depth + 1);
    for (const [k, c] of aliasesOf(n)) walk(c, at(k), true, depth + 1);
  };
  walk(root, '', false, 0);
  return out;
}

/** The module tree like PyTorch's repr, with each alias as a line `(layers): -> transformer.h`. */
export function formatAliased(root: ModuleNode): string {
  const lines: string[] = [];
  const walk = (n: ModuleNode, label: string, depth: number) => {
    const pad = '  '.repeat(depth);
    const aliases = aliasesOf(n);
    if (n.children.size === 0 && aliases.size === 0) return void lines.push(`${pad}${label}${n.entry.type}()`);
    lines.push(`${pad}${label}${n.entry.type}(`);
    for (const [k, c] of n.children) walk(c, `(${k}): `, depth + 1);
    for (const [k, c] of aliases) lines.push(`${pad}  (${k}): -> ${c.path}`);
    lines.push(`${pad})`);
  };
  walk(root, '', 0);
  return lines.join('\n');
}

// ---- types: the typed tree with the aliases of a rename ----

export type ChildrenOf<D> = D extends { children: infer C } ? C : D extends { list: infer L; length: infer N extends number } ? { [K in `${number}`]: L } & { length: N } : {};

/** The description at a dotted path of `D`. */
export type DescAt<D, P extends string> = P extends `${infer H}.${infer Rest}` ? DescAt<ChildAt<D, H>, Rest> : ChildAt<D, P>;
export type ChildAt<D, K extends string> = D extends { list: infer L } ? L : D extends { children: infer C } ? (K extends keyof C ? C[K] : never) : never;

/** The plain-name keys of R (child renames) and the dotted or root keys (path aliases) */
export type NameKeys<D, R> = { [K in keyof R & string]: K extends `${string}.${string}` ? never : K extends keyof ChildrenOf<D> ? never : K }[keyof R & string];

/** `D` with every child named by a plain-name key of `R` also reachable by its alias, at every depth. */
export type WithNames<D, R, Names extends string, Depth extends unknown[] = []> = Depth['length'] extends 12
  ? D
  : D extends { list: infer L }
    ? Omit<D, 'list'> & { list: WithNames<L, R, Names, [...Depth, 0]> }
    : D extends { children: infer C }
      ? C extends readonly unknown[]
        ? D
        : Omit<D, 'children'> & {
            children: { [K in keyof C]: WithNames<C[K], R, Names, [...Depth, 0]> } & {
              [K in keyof C & Names as R[K & keyof R] & string]: WithNames<C[K], R, Names, [...Depth, 0]>;
            };
          }
      : D;

/**
 * The module description `D` (the exporter's model.d.ts) with the aliases of rename `R`:
 * `LanguageModel.load<Renamed<GPT2LMHeadModel, typeof rename>>(dir, { rename })` where
 * `const rename = { 'transformer.h': 'layers' } as const` types `m.layers[3].attn`.
 * (Path aliases are typed where they are mounted at the root; a dotted alias value is not typed.)
 */
export type Renamed<D extends ModuleDesc, R extends Rename> =
  WithNames<D, R, NameKeys<D, R>> extends infer W
    ? Omit<W, 'children'> & {
        children: (W extends { children: infer C } ? C : {}) & {
          [K in Exclude<keyof R & string, NameKeys<D, R>> as R[K] extends `${string}.${string}` ? never : R[K]]: WithNames<DescAt<D, K>, R, NameKeys<D, R>>;
        };
      }
    : never;
