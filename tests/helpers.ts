// Test helpers: the example models and the oracle (eager PyTorch in Debian's python3 on the
// same weights, never model.pt).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'vitest';
import { Tensor } from '../src/index.js';
import type { NativeModel } from '../src/native.js';
import { wireRequest } from './support/wire.js';

export const ROOT = join(import.meta.dirname, '..');
export const MODELS = { gpt2: join(ROOT, 'models', 'gpt2'), llama: join(ROOT, 'models', 'llama') } as const;
export type Arch = keyof typeof MODELS;
export const ARCHS: Arch[] = ['gpt2', 'llama'];
export const PYTHON = process.env.TORCHSIGHT_PYTHON ?? '/usr/bin/python3';

export interface OracleTensor {
  shape: number[];
  data: (number | string)[];
}

/**
 * The environment of a child process (python3, Chromium): never the sanitizer that
 * `npm run test:asan` preloads for the addon under test.
 */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.LD_PRELOAD;
  delete env.ASAN_OPTIONS;
  delete env.LSAN_OPTIONS;
  return env;
}

function oracleEnv(): NodeJS.ProcessEnv {
  return childEnv({ PYTHONPATH: join(ROOT, 'python') });
}

/**
 * Runs Python `code` against the eager model of `arch` and returns its `result`. In scope:
 * model, torch, batch_inputs(list_of_id_lists), get_module(path), tokenizer, manifest.
 */
export function oracle<T = any>(arch: Arch | null, code: string): T {
  const r = spawnSync(PYTHON, ['-m', 'torchsight_testing.oracle'], {
    input: JSON.stringify({ model: arch ? MODELS[arch] : MODELS.gpt2, code }),
    env: oracleEnv(),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`oracle failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export function num(x: number | string): number {
  return typeof x === 'number' ? x : x === 'NaN' ? NaN : x === 'Infinity' ? Infinity : -Infinity;
}

/** Asserts a Tensor equals an oracle tensor in shape and values (|a-b| <= atol + rtol*|b|). */
export function expectClose(actual: Tensor, expected: OracleTensor, atol = 1e-4, rtol = 1e-4): void {
  expect(actual.shape).toEqual(expected.shape);
  const a = Array.from(actual.data() as ArrayLike<number | bigint>, Number);
  const b = expected.data.map(num);
  expect(a.length).toBe(b.length);
  let worst = 0;
  let where = -1;
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i] - b[i]) - (atol + rtol * Math.abs(b[i]));
    if (Number.isNaN(a[i]) !== Number.isNaN(b[i])) throw new Error(`NaN mismatch at ${i}: ${a[i]} vs ${b[i]}`);
    if (err > worst) {
      worst = err;
      where = i;
    }
  }
  if (where >= 0) throw new Error(`tensors differ at flat index ${where}: ${a[where]} vs ${b[where]} (shape [${expected.shape}])`);
}

/** Asserts two Tensors hold exactly the same shape and values (the same run read two ways). */
export function sameValues(a: Tensor, b: Tensor): void {
  expect(a.shape).toEqual(b.shape);
  expect(Array.from(a.data() as Float32Array)).toEqual(Array.from(b.data() as Float32Array));
}

/** Python literal of a JS number array (nested). */
export function py(v: unknown): string {
  return JSON.stringify(v).replace(/null/g, 'None').replace(/true/g, 'True').replace(/false/g, 'False');
}

/** Runs a request with nodes in object form on the native entry (packing them first); anything
 * that is not such a request goes to the native entry as it is. Packing errors reject too. */
export async function runNodes(nm: NativeModel, req: unknown): ReturnType<NativeModel['run']> {
  const r = req as { nodes?: unknown };
  if (r !== null && typeof r === 'object' && 'nodes' in r) return nm.run(wireRequest(nm, r as never) as never);
  return nm.run(req as never);
}
