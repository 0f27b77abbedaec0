// `Tensor`: a handle on a native tensor that stays on its device until read. Its op methods
// call the same native op table the graph interpreter uses.
import { native, type NativeTensor } from './native.js';
import { installOps, normalizeArgs, returnsPair, type BoundOp, type TensorOps } from './ops.js';
import { formatTensor } from './format.js';
import { RECORD, isProxyLike, tupleItems } from './markers.js';

export type Dtype = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool';
export type NestedArray = number | boolean | NestedArray[];

export interface FromOptions {
  shape?: number[];
  dtype?: Dtype;
  device?: string;
}

// the markers live below both this module and the tracer; re-exported for the tracer's modules
export { TUPLE_ITEMS, tupleItems } from './markers.js';

export class Tensor {
  static {
    // the op methods of ops.json, each running the native op now (eager, below)
    installOps(this.prototype, eager);
  }

  #handle: NativeTensor | undefined;

  /** @internal wraps a native handle; use Tensor.from to make one */
  constructor(handle: NativeTensor) {
    this.#handle = handle;
  }

  /** @internal the native handle; throws if disposed */
  get native(): NativeTensor {
    const h = this.#handle;
    if (!h || native().tensorDisposed(h)) throw new Error('this Tensor was disposed');
    return h;
  }

  /**
   * @internal the native handle, checked only on this side (no call into the addon): for the
   * packed graph, whose reader refuses a disposed tensor itself
   */
  get handle(): NativeTensor {
    const h = this.#handle;
    if (!h) throw new Error('this Tensor was disposed');
    return h;
  }

  static from(data: NestedArray | ArrayBufferView, options: FromOptions = {}): Tensor {
    let flat: ArrayBufferView;
    let shape: number[];
    let srcDtype: Dtype;
    if (ArrayBuffer.isView(data)) {
      const ta = data as unknown as ArrayLike<number> & ArrayBufferView;
      flat = data;
      if (options.shape) checkShape(options.shape);
      shape = options.shape ?? [ta.length];
      srcDtype =
        data instanceof Float32Array ? 'float32'
        : data instanceof Float64Array ? 'float64'
        : data instanceof BigInt64Array ? 'int64'
        : data instanceof Int32Array ? 'int32'
        : data instanceof Int16Array ? 'int16'
        : data instanceof Int8Array ? 'int8'
        : data instanceof Uint8Array ? 'uint8'
        : (() => { throw new Error('Tensor.from: unsupported typed array'); })();
    } else {
      shape = [];
      let probe: unknown = data;
      while (Array.isArray(probe)) {
        shape.push(probe.length);
        probe = probe[0];
      }
      const values: number[] = [];
      let bools = true;
      const walk = (x: unknown, dim: number, path: string) => {
        if (dim === shape.length) {
          if (typeof x === 'boolean') values.push(x ? 1 : 0);
          else if (typeof x === 'number') { values.push(x); bools = false; }
          else throw new Error(`Tensor.from: element ${path || '[]'} is ${x === null ? 'null' : typeof x}, expected a number`);
          return;
        }
        if (!Array.isArray(x) || x.length !== shape[dim])
          throw new Error(`Tensor.from: ragged nested array at ${path || 'the top'}: expected ${shape[dim]} items`);
        x.forEach((y, i) => walk(y, dim + 1, `${path}[${i}]`));
      };
      walk(data, 0, '');
      if (options.shape) {
        checkShape(options.shape);
        const n = options.shape.reduce((a, b) => a * b, 1);
        if (n !== values.length) throw new Error(`Tensor.from: shape [${options.shape.join(', ')}] needs ${n} values, got ${values.length}`);
        shape = options.shape;
      }
      const isBool = bools && values.length > 0;
      flat = isBool ? Uint8Array.from(values) : Float64Array.from(values);
      srcDtype = isBool ? 'bool' : 'float32';
    }
    const dtype = options.dtype ?? srcDtype;
    const device = options.device ?? 'cpu';
    if (typeof dtype !== 'string') throw new Error(`Tensor.from: dtype must be a string such as 'float32' or 'int64', got ${typeof dtype}`);
    if (typeof device !== 'string') throw new Error(`Tensor.from: device must be a string such as 'cpu' or 'cuda:0', got ${typeof device}`);
    try {
      return new Tensor(native().tensorFrom(flat, shape, dtype, device));
    } catch (e) {
      if (e instanceof Error && !e.message.startsWith('Tensor.from')) e.message = `Tensor.from: ${e.message}`;
      throw e;
    }
  }

  /** Concatenates along `dim` (PyTorch's torch.cat). Proxies inside a trace are recorded. */
  static cat(tensors: Tensor[], dim = 0): Tensor {
    return staticOp('cat', tensors, dim) as Tensor;
  }

  /** Stacks along a new `dim` (PyTorch's torch.stack). */
  static stack(tensors: Tensor[], dim = 0): Tensor {
    return staticOp('stack', tensors, dim) as Tensor;
  }

  // the addon checks a handle itself and says 'this Tensor was disposed'
  get shape(): number[] {
    return native().tensorShape(this.handle);
  }
  get dtype(): Dtype {
    return native().tensorDtype(this.handle) as Dtype;
  }
  get device(): string {
    return native().tensorDevice(this.handle);
  }
  get disposed(): boolean {
    return !this.#handle || native().tensorDisposed(this.#handle);
  }
  get ndim(): number {
    return this.shape.length;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  size(dim?: number): number | number[] {
    const s = this.shape;
    if (dim === undefined) return s;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) throw new Error(`size(${dim}): dimension out of range for shape [${s.join(', ')}]`);
    return s[d];
  }

  item(): number {
    return native().tensorItem(this.handle) as number;
  }

  /** A host copy as a typed array (float16/bfloat16 widen to Float32Array, int64 is BigInt64Array). */
  data(): Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array {
    return native().tensorData(this.handle);
  }

  /** Nested arrays of numbers (booleans for bool tensors). */
  toArray(): NestedArray {
    const shape = this.shape;
    const flat = this.data();
    const isBool = this.dtype === 'bool';
    const at = (i: number) => (isBool ? flat[i] !== 0 : Number(flat[i]));
    if (shape.length === 0) return at(0) as NestedArray;
    const build = (dim: number, offset: number, stride: number): NestedArray[] => {
      const out: NestedArray[] = [];
      const inner = stride / shape[dim];
      for (let i = 0; i < shape[dim]; i++)
        out.push(dim === shape.length - 1 ? (at(offset + i) as NestedArray) : build(dim + 1, offset + i * inner, inner));
      return out;
    };
    const total = shape.reduce((a, b) => a * b, 1);
    return build(0, 0, total);
  }

  toString(): string {
    if (this.disposed) return 'Tensor(disposed)';
    return formatTensor(this.data(), this.shape, this.dtype, this.device);
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  toJSON(): NestedArray {
    return this.toArray();
  }

  /** Frees the native memory now; later use throws. */
  dispose(): void {
    if (this.#handle) native().tensorDispose(this.#handle);
    this.#handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Tensor extends TensorOps<Tensor, Tensor | number> {}

function checkShape(shape: unknown): void {
  if (!Array.isArray(shape) || shape.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0))
    throw new Error(`Tensor.from: shape must be an array of non-negative integers, got ${Array.isArray(shape) ? `[${shape.map(String).join(', ')}]` : typeof shape}`);
}

const isTensor = (v: unknown): v is Tensor => v instanceof Tensor;
const isValueLike = (v: unknown) => v instanceof Tensor || isProxyLike(v);

/** Tensor arguments become native handles (arrays walked). */
export function toNativeArg(v: unknown): unknown {
  if (v instanceof Tensor) return v.native;
  if (Array.isArray(v)) return v.map(toNativeArg);
  return v;
}

/** Is `v` a tensor handle of the addon? (asks the addon: for values from users) */
export function isNativeTensor(v: unknown): v is NativeTensor {
  return v !== null && typeof v === 'object' && native().isTensor(v);
}

/**
 * Native results become Tensors (arrays walked). The addon returns numbers, booleans, strings,
 * null, arrays and tensor handles: any other object is a handle, so no call asks.
 */
export function fromNative(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(fromNative);
  return new Tensor(v as NativeTensor);
}

function eager(self: Tensor, spec: BoundOp, raw: unknown[]): unknown {
  const { op } = spec;
  if (raw.some(isProxyLike))
    throw new Error(`${op}: a proxy from a trace cannot be used with an eager Tensor outside the trace's callback; use it inside the trace`);
  const args = normalizeArgs(spec, raw, isValueLike);
  const nativeArgs = [self.native, ...args.map(toNativeArg)];
  const result = callNative(op, nativeArgs);
  if (spec.inplace) {
    // PyTorch's `t.add_(x) is t`: the same Tensor, now changed; drop the extra handle now
    native().tensorDispose(result as NativeTensor);
    return self;
  }
  const out = fromNative(result);
  if (returnsPair(spec, args)) {
    const [values, indices] = out as [Tensor, Tensor];
    return { values, indices };
  }
  return out;
}

function staticOp(op: 'cat' | 'stack', list: unknown[], dim: number): unknown {
  // a module's tuple output inside a trace stands for its items, as in Python
  const tensors = tupleItems(list) ?? list;
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error(`Tensor.${op}: expected a non-empty array of tensors`);
  // a proxy in the list: the op is recorded on its trace's graph
  const proxy = tensors.find(isProxyLike);
  if (proxy) return proxy[RECORD](op, [tensors, dim]);
  tensors.forEach((t, i) => {
    if (!isTensor(t)) throw new Error(`Tensor.${op}: item ${i} is not a Tensor`);
  });
  return fromNative(callNative(op, [tensors.map(toNativeArg), dim]));
}

/** Runs one native op; an error message that does not name the op gets it as a prefix. */
function callNative(op: string, args: unknown[]): unknown {
  try {
    return native().op(op, args);
  } catch (e) {
    if (e instanceof Error && !e.message.startsWith(`${op}:`) && !e.message.startsWith(`${op}(`)) e.message = `${op}: ${e.message}`;
    throw e;
  }
}
