// model.scan(input, fn): fn's graph run for shapes and dtypes only, like nnsight's
// `model.scan`. The request is the one a trace would send; natively it runs inside the forward
// of a copy of the model whose weights, inputs and constants are meta tensors (native/scan.cpp),
// so every op computes its output's shape and dtype through the kernels' own shape checks (a
// shape error reads as in a trace, at the user's line) and no weight is read.
import type { TraceInput } from './inputs.js';
import { cancelFlag } from './native.js';
import { ModelRuntime, rejecting, type ModelBackend } from './runtime.js';
import { Tensor, type Dtype } from './tensor.js';
import { markSaved, substitute } from './trace/proxy.js';
import type { Tracer } from './trace/tracer.js';
import type { EnvoyOf } from './trace/types.js';

/** A tensor as model.scan gives it: its shape and dtype, no values. */
export interface ScannedTensor {
  shape: number[];
  dtype: Dtype;
}

/** fn's return type with every proxy (and Tensor) replaced by its ScannedTensor. */
export type Scanned<T> = T extends { save(): unknown; graph: unknown }
  ? ScannedTensor
  : T extends Tensor
    ? ScannedTensor
    : T extends ReadonlyArray<infer U>
      ? Scanned<U>[]
      : T extends object
        ? { [K in keyof T]: Scanned<T[K]> }
        : T;

export interface ScanOptions {
  /** Cancels the scan before it runs, or at the next module while it runs. */
  signal?: AbortSignal;
}

/** Records `input`/`fn` as a trace would and runs it on the model's meta copy. */
export function scan<T, R>(
  backend: ModelBackend,
  input: TraceInput | ((tracer: Tracer<T>) => R),
  fn: ((m: EnvoyOf<T>, tracer: Tracer<T>) => R) | undefined,
  options: ScanOptions = {},
): Promise<Scanned<R>> {
  return rejecting(() => {
    if (!(backend instanceof ModelRuntime))
      throw new Error('model.scan runs on a model loaded here: a remote model has no graph here to scan, and servers take no scans (trace it instead)');
    const rt = backend;
    const { graph, result } = rt.recordNew((g) => rt.recordTrace<T, R>(g, input, fn));
    const { signal } = options;
    signal?.throwIfAborted();
    markSaved(result);
    graph.seal();
    const cancel = signal ? cancelFlag() : undefined;
    const nm = rt.native;
    const start = () => {
      const request: Parameters<typeof nm.scan>[0] = graph.request(nm, true);
      request.cancel = cancel;
      return nm.scan(request);
    };
    return rt.queue.run({ signal, cancel, explain: (m) => graph.explain(m) }, start, (raw) => {
      graph.resolve(raw.saved); // already {shape, dtype} objects: no tensor handle is made
      return scannedValue(substitute(result)) as Scanned<R>;
    });
  });
}

/** Eager Tensors fn returned as they are, as ScannedTensors too (substitute made the containers anew). */
function scannedValue(v: unknown): unknown {
  if (v instanceof Tensor) return { shape: v.shape, dtype: v.dtype };
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = scannedValue(v[i]);
  } else if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const k of Object.keys(v)) (v as Record<string, unknown>)[k] = scannedValue((v as Record<string, unknown>)[k]);
  }
  return v;
}
