// Loads the C++ addon once and types what it exports.
import { loadAddon, type AddonChoice, type LoadedAddon } from './install/loader.js';
import { checkNativeSwitches } from './settings.js';

/**
 * The values of a request's cancel flag (an Int32Array of one element on a SharedArrayBuffer),
 * which the native side polls at every hook site and step. native/ has the same enum: keep the
 * two in step.
 */
export const enum CancelFlag {
  /** keep going */
  Running = 0,
  /** stop now and reject (an abort signal, or a callback that threw) */
  Abort = 1,
  /** end the generation normally after this step (every row has seen a stop string) */
  Stop = 2,
}

/** A new cancel flag, set to Running. */
export function cancelFlag(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4));
}

/**
 * The addon's handle on a native tensor: an opaque External (the tensor* functions of the addon
 * read it). Tensor (tensor.ts) wraps one.
 */
export type NativeTensor = { readonly __nativeTensor: unique symbol };

export interface ApplyRule {
  kind: string;
  eps?: number;
  fn?: string;
}

export interface WireTrace {
  batch: number;
  seq: number;
  /** Int32Array or BigInt64Array, [batch * seq] */
  ids: Int32Array | BigInt64Array;
  mask: Int32Array | BigInt64Array;
  pos: Int32Array | BigInt64Array;
  invokes: [number, number][];
  begin: number;
  end: number;
  stop: boolean;
}

/** A graph packed for the native entry (trace/wire.ts). */
export interface PackedGraph {
  code: Float64Array;
  strings: string[];
  tensors: NativeTensor[];
}

/** One operation of a module's forward, as the native model lists it. */
export interface SourceOp {
  /** the module whose own forward calls it ('' the root) */
  module: string;
  /** kind and number per kind within the module: 'softmax_0' */
  name: string;
  /** the TorchScript kind: 'aten::softmax' */
  kind: string;
  /** its output's site */
  output: string;
  /** each input's site; null where the input is not a tensor (a dim, a dtype) */
  inputs: (string | null)[];
  /** its output's shape in two probe forwards at load, [1, 3] and [2, 5] tokens; empty when not probed */
  shapes: number[][];
}

export interface RunResult {
  /** the saved values, flat: node id, value, node id, value, ... (savedEntries pairs them) */
  saved: unknown[];
  logits?: NativeTensor;
  fired?: string[];
}

export interface NativeModel {
  readonly device: string;
  readonly dtype: string;
  sites(): string[];
  /** model.pt's operations, for `.source` (native/site_graphs.cpp lists them at load) */
  ops(): SourceOp[];
  configure(options: { vocabSize?: number; maxPositions?: number; apply?: Record<string, ApplyRule>; cache?: { layers: number; kvHeads: number; headDim: number } }): void;
  run(request: { traces: WireTrace[]; graph: PackedGraph; recordSites?: boolean; returnLogits?: boolean; cancel?: Int32Array }): Promise<RunResult>;
  /** run() for shapes and dtypes only, on the model's meta copy: saved tensors come back as {shape, dtype} (src/scan.ts). */
  scan(request: { traces: WireTrace[]; graph: PackedGraph; cancel?: Int32Array }): Promise<{ saved: unknown[] }>;
  readonly hasCache: boolean;
  generate(
    request: { traces: WireTrace[]; graph: PackedGraph; cancel?: Int32Array },
    options: { maxNewTokens: number; temperature: number; topK: number; topP: number; seed: number; stopIds: number[]; padId: number; useCache: boolean },
    onStep?: (tokens: number[], step: number) => void,
  ): Promise<{ saved: unknown[]; tokens: number[][]; steps: number; usedCache: boolean }>;
  dispose(): void;
  /** The site graphs (forwards keeping only the sites a repeated request uses) built or building. */
  siteGraphs(): { forward: 'model' | 'step'; sites: string[]; ready: boolean; uses: number; siteOps: number }[];
}

/** A result's saved values as [node id, value] pairs. */
export function savedEntries(saved: readonly unknown[]): [number, unknown][] {
  const out: [number, unknown][] = [];
  for (let i = 0; i + 1 < saved.length; i += 2) out.push([saved[i] as number, saved[i + 1]]);
  return out;
}

export interface NativeAddon {
  tensorShape(h: NativeTensor): number[];
  tensorDtype(h: NativeTensor): string;
  tensorDevice(h: NativeTensor): string;
  tensorDisposed(h: NativeTensor): boolean;
  tensorItem(h: NativeTensor): number | boolean;
  tensorData(h: NativeTensor): Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
  tensorDispose(h: NativeTensor): void;
  /** whether `v` is a live tensor handle of this addon (disposed or not) */
  isTensor(v: unknown): v is NativeTensor;
  tensorFrom(data: ArrayBufferView, shape: number[], dtype: string, device: string): NativeTensor;
  op(name: string, args: unknown[]): unknown;
  opNames(): string[];
  loadModel(path: string, device: string, dtype: string, stepPath?: string, onProgress?: (phase: string, done: number, total: number) => void): Promise<NativeModel>;
  info(): { torch: string; cudaAvailable: boolean; cudaDevices: number; threads: number; interopThreads: number; parallelInfo: string; blasCore?: string };
  setNumThreads(n: number): number;
}

let loaded: LoadedAddon<NativeAddon> | undefined;

/** The addon, loaded on first use (see install/loader.ts for how it is found). */
export function native(): NativeAddon {
  if (!loaded) {
    checkNativeSwitches(); // the addon reads TORCHSIGHT_JIT_PROFILING as it loads
    loaded = loadAddon<NativeAddon>();
  }
  return loaded.addon;
}

/** How the loaded addon was chosen, and the libtorch under it; undefined before first use. */
export function addonChoice(): AddonChoice | undefined {
  return loaded?.choice;
}
