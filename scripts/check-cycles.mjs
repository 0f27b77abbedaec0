// Fails when the modules of src/ import each other in a circle (type-only imports count too: a
// circle of types is still two concepts that cannot be read apart). No dependency: it reads the
// relative import and export-from specifiers of every .ts file.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'src'));
const files = readdirSync(root, { recursive: true }).filter((f) => String(f).endsWith('.ts')).map((f) => join(root, String(f)));
const SPEC = /^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"](\.[^'"]+)['"]|^\s*import\s*['"](\.[^'"]+)['"]/gm;
const deps = new Map();
for (const f of files) {
  const out = new Set();
  for (const m of readFileSync(f, 'utf8').matchAll(SPEC)) out.add(resolve(dirname(f), (m[1] ?? m[2]).replace(/\.js$/, '.ts')));
  deps.set(f, [...out].filter((d) => deps.has(d) || files.includes(d)));
}
// depth-first search; a back edge is a circle
const state = new Map();
const cycles = [];
const visit = (f, path) => {
  state.set(f, 'open');
  for (const d of deps.get(f) ?? []) {
    if (state.get(d) === 'open') cycles.push([...path.slice(path.indexOf(d)), d]);
    else if (!state.has(d)) visit(d, [...path, d]);
  }
  state.set(f, 'done');
};
for (const f of files) if (!state.has(f)) visit(f, [f]);
for (const c of cycles) console.log(`circle: ${c.map((f) => relative(root, f)).join(' -> ')}`);
console.log(`${files.length} modules, ${cycles.length} circle(s)`);
process.exit(cycles.length ? 1 : 0);
