// Timing and statistics shared by the bench's parts.
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * A 95% interval for the median of `xs` (percentile bootstrap, 2000 resamples, a fixed seed so
 * a re-render gives the same figures). The samples drift with the machine, so they are not
 * independent and the interval is a guide to the noise, not a guarantee.
 */
export function medianInterval(xs: number[]): [number, number] {
  let seed = 0x9e3779b9;
  const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const meds: number[] = [];
  const r = new Array<number>(xs.length);
  for (let b = 0; b < 2000; b++) {
    for (let i = 0; i < xs.length; i++) r[i] = xs[Math.floor(rand() * xs.length)];
    meds.push(median(r));
  }
  meds.sort((a, b) => a - b);
  return [meds[Math.floor(meds.length * 0.025)], meds[Math.floor(meds.length * 0.975) - 1]];
}

/** Wall-clock milliseconds of `iters` calls of `fn`, one sample each. */
export async function time(fn: () => Promise<unknown>, iters: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

/** Samples of several kinds, interleaved call by call in an order that turns every iteration:
 * a call's time depends on what ran just before it (the BLAS thread spinning or asleep, caches
 * warm or not), and in a fixed order that bias falls on one kind. */
export async function interleaved(fns: Record<string, () => Promise<unknown>>, iters: number, into: Record<string, number[]>): Promise<void> {
  const kinds = Object.entries(fns);
  for (let i = 0; i < iters; i++)
    for (let j = 0; j < kinds.length; j++) {
      const [k, f] = kinds[(i + j) % kinds.length];
      (into[k] ??= []).push((await time(f, 1))[0]);
    }
}

export function seededIds(n: number, vocab: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s % vocab;
  });
}

/** A line-oriented Python child: one request line in, one answer line out. */
export function lineServer(child: ChildProcess, what: string) {
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error(`${what} ended early`);
    return r.value as string;
  };
  return {
    ready: next().then((l) => {
      if (l !== 'ready') throw new Error(`${what}: expected 'ready', got ${l}`);
    }),
    async ask<T>(line: string): Promise<T> {
      child.stdin!.write(`${line}\n`);
      return JSON.parse(await next()) as T;
    },
    close: () => child.stdin!.end(),
  };
}
