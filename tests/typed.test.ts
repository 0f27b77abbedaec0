// Typed module trees: the exporter's model.d.ts with LanguageModel.load<GPT2LMHeadModel>(dir) gives
// typed envoys. The fixtures in tests/fixtures/typed/ are compiled with the TypeScript compiler
// against a model.d.ts written now from models/gpt2/torchsight.json (rootDirs maps their
// './model.js' to it), and the compiling fixture also runs on the real model.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor } from '../src/index.js';
import { MODELS, PYTHON, ROOT, childEnv } from './helpers.js';
import { run } from './fixtures/typed/ok.js';

const FIXTURES = join(ROOT, 'tests', 'fixtures', 'typed');
let gen: string;
let diagnostics: Map<string, string[]>;

/** Writes model.d.ts for `manifest` into `dir` with the exporter's write_dts. */
function writeDts(manifest: string, out: string, name: string): void {
  const code = 'import json, sys\nfrom torchsight_export.dts import write_dts\nwrite_dts(json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3])';
  const r = spawnSync(PYTHON, ['-c', code, manifest, out, name], { env: childEnv({ PYTHONPATH: join(ROOT, 'python') }), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`write_dts failed:\n${r.stdout}\n${r.stderr}`);
}

/** Type-checks the fixtures as the package's tsconfig would; the errors of each file. */
function compile(files: string[]): Map<string, string[]> {
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
    types: ['node'],
    typeRoots: [join(ROOT, 'node_modules', '@types')],
    skipLibCheck: true,
    rootDirs: [FIXTURES, gen],
  });
  const out = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const file = d.file?.fileName ?? '(global)';
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
    const list = out.get(file) ?? out.set(file, []).get(file)!;
    list.push(`${file}:${line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  }
  return out;
}

beforeAll(() => {
  gen = mkdtempSync(join(tmpdir(), 'torchsight-typed-'));
  writeDts(join(MODELS.gpt2, 'torchsight.json'), join(gen, 'model.d.ts'), 'GPT2LMHeadModel');
  diagnostics = compile([join(FIXTURES, 'ok.ts'), join(FIXTURES, 'bad.ts')]);
});
afterAll(() => {
  if (gen) rmSync(gen, { recursive: true, force: true });
});

describe('typed module trees', () => {
  it('the exporter writes the module tree as interfaces', () => {
    const text = readFileSync(join(gen, 'model.d.ts'), 'utf8');
    expect(text).toContain('export interface GPT2LMHeadModel {');
    expect(text).toContain("list: GPT2Block;\n  length: 12;");
    expect(text).toContain('mlp: GPT2MLP;');
  });

  it('typed code compiles: children, lists, tuple outputs, writes, applying modules', () => {
    const errors = [...diagnostics].filter(([f]) => !f.endsWith('bad.ts')).flatMap(([, e]) => e);
    expect(errors).toEqual([]);
  });

  it("a wrong module name fails to compile, naming it ('transformer.hh')", () => {
    const errors = diagnostics.get(join(FIXTURES, 'bad.ts'))!;
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(/bad\.ts:7: Property 'hh' does not exist on type/);
  });

  it('a typed model still traces (the compiled fixture, run on models/gpt2)', async () => {
    const r = await run(MODELS.gpt2);
    expect(r.layers).toBe(12);
    expect(r.kind).toBe('GPT2Block');
    expect(r.paths).toEqual(Array.from({ length: 12 }, (_, i) => `transformer.h.${i}.mlp`));
    expect(r.types).toEqual(new Array(12).fill('GPT2Block'));
    expect(r.none).toBeNull();
    expect(r.inputCount).toBe(2);
    const L = r.logits.shape[1];
    expect(r.logits.shape).toEqual([1, L, 512]);
    expect(r.lensed.shape).toEqual([1, L, 512]);
    expect(r.mlp.shape).toEqual([1, L, 64]);
    expect(r.input.shape).toEqual([1, L, 64]);
    expect(Array.from(r.logits0.data() as Float32Array)).toEqual(Array.from(r.logits.data() as Float32Array));
    expect(r.block.length).toBe(1);
    expect(r.block[0]).toBeInstanceOf(Tensor);
    expect(r.attn[0]).toBeInstanceOf(Tensor);
    expect(r.attn[1]).toBeNull();
    expect(r.both.shape[0]).toBe(1);
    expect(r.session.shape).toEqual([1, L, 64]);
    expect(r.tokens.length).toBe(2);
  });
});
