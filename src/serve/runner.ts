// The one place the server (and the remote tests) reach into LanguageModel: loading a model
// and running a decoded request on its native model, and, for tests, recording a request on a
// local copy of the model (remote/record.ts) the way a remote model records it.
// Everything else in src/serve and src/remote sees only the ServedModel interface and the
// envelope's WireRequest/WireResult, so this file is what follows LanguageModel's internals.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LanguageModel, type Resolved } from '../model.js';
import type { NativeModel } from '../native.js';
import type { Manifest } from '../manifest.js';
import type { TraceInput } from '../inputs.js';
import type { Session } from '../trace/session.js';
import type { GenerationScope, GenerateOptions } from '../generate.js';
import type { EnvoyOf } from '../trace/types.js';
import type { DecodedRequest, WireResult } from '../remote/envelope.js';
import { recordGenerateRequest, recordSessionRequest, recordTraceRequest, type Recorded, type RecordedGeneration } from '../remote/record.js';
import type { ValidationTarget } from './validate.js';

/** A model as the server sees it. */
export interface ServedModel {
  readonly name: string;
  readonly manifest: Manifest;
  /** tokenizer.json as it is on disk */
  readonly tokenizerJson: Buffer;
  /** the module tree, one module a line (String(model)) */
  readonly tree: string;
  readonly device: string;
  readonly dtype: string;
  readonly target: ValidationTarget;
  /** Runs a trace or session request. One at a time per model (the scheduler sees to it). */
  run(req: DecodedRequest, cancel: Int32Array): Promise<WireResult>;
  /** Runs a generation; `onStep` gets each step's tokens (-1 for a row that had stopped). */
  generate(req: DecodedRequest, cancel: Int32Array, onStep: (tokens: number[], step: number) => void): Promise<WireResult>;
  dispose(): Promise<void>;
}

export async function loadServedModel(dir: string, name: string, options: { device?: string } = {}): Promise<ServedModel> {
  const model = await LanguageModel.load(dir, { device: options.device });
  const nm: NativeModel = model.native;
  const manifest = model.manifest;
  const cfg = (manifest.config ?? {}) as Record<string, unknown>;
  const target: ValidationTarget = {
    sites: nm.sites(),
    ops: nm.ops(),
    applicable: new Set(manifest.modules.filter((m) => m.apply && m.apply.kind !== 'none').map((m) => m.path)),
    vocabSize: manifest.vocabSize,
    maxPositions: Number(cfg.n_positions ?? cfg.max_position_embeddings ?? 0) || 2 ** 31,
  };
  const tokenizerJson = readFileSync(join(model.dir, 'tokenizer.json'));
  return {
    name,
    manifest,
    tokenizerJson,
    tree: String(model),
    device: model.device,
    dtype: model.dtype,
    target,
    async run(req, cancel) {
      const raw = await nm.run({ traces: req.traces, graph: req.graph, cancel });
      return { saved: raw.saved };
    },
    async generate(req, cancel, onStep) {
      const g = req.generate!;
      const rows = req.traces[0].batch;
      const sofar: number[][] = Array.from({ length: rows }, () => []);
      const done = new Array<boolean>(rows).fill(false);
      // step events travel apart from the result (native code sends exactly one a step): the
      // result waits for all of them, so the job's token stream is complete when it finishes
      let seen = 0;
      let expected = Infinity;
      let allSeen: (() => void) | undefined;
      // stop strings are checked here, where the tokens are made (flag 2: stop after this step)
      const step = (tokens: number[], i: number) => {
        if (++seen >= expected) allSeen?.();
        tokens.forEach((t, b) => t >= 0 && !done[b] && sofar[b].push(t));
        if (g.stopStrings.length) {
          sofar.forEach((r, b) => {
            if (tokens[b] < 0 || g.stopStrings.some((s) => model.tokenizer.decode(r).includes(s))) done[b] = true;
          });
          if (done.every(Boolean)) Atomics.compareExchange(cancel, 0, 0, 2);
        }
        onStep(tokens, i);
      };
      const raw = await nm.generate(
        { traces: req.traces, graph: req.graph, cancel },
        { maxNewTokens: g.maxNewTokens, temperature: g.temperature, topK: g.topK, topP: g.topP, seed: g.seed, stopIds: g.stopIds, padId: model.padId, useCache: g.useCache },
        step,
      );
      if (seen < raw.steps) {
        expected = raw.steps;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (allSeen = r)), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
        clearTimeout(timer);
      }
      return { saved: raw.saved, generate: { tokens: raw.tokens, steps: raw.steps, usedCache: raw.usedCache } };
    },
    dispose: () => model.dispose(),
  };
}

// ---- the client's side, for tests that record on a local copy of the served model ----

/** Records `model.trace(input, fn)` on a local model without running it. */
export function recordTrace<T, R>(model: LanguageModel<T>, input: TraceInput | ((tracer: any) => R), fn?: (m: EnvoyOf<T>, tracer: any) => R): Recorded<Resolved<R>> {
  return recordTraceRequest<T, R>(model.backend, input, fn);
}

/** Records `model.session(fn)` on a local model without running it. */
export function recordSession<T, R>(model: LanguageModel<T>, fn: (s: Session<T>) => R): Recorded<Resolved<R>> {
  return recordSessionRequest<T, R>(model.backend, fn);
}

/** Records `model.generate(input, options, fn)` on a local model without running it; resolves to fn's value plus tokens. */
export function recordGenerate<T, R>(model: LanguageModel<T>, input: TraceInput, options: GenerateOptions, fn?: (m: EnvoyOf<T>, gen: GenerationScope<T>) => R): Recorded<RecordedGeneration<R>> {
  return recordGenerateRequest<T, R>(model.backend, input, options, fn);
}
