// torchsight: nnsight-style interpretability for Node.js on libtorch.
export { LanguageModel, Tracer, Session, type LoadOptions, type LoadProgress, type TraceOptions, type RemoteOptions, type Resolved, type GenerateResult, type Scanned, type ScannedTensor, type ScanOptions } from './model.js';
export { Job, type JobValues, type RemoteModelOptions } from './remote/backend.js';
export type { EditFn, EditOptions } from './edit.js';
export type { Rename, Renamed, DescAt, ChildAt, ChildrenOf, NameKeys, WithNames } from './trace/rename.js';
export { CacheEntry, type Cache, type CacheFilter, type CacheOptions } from './trace/cache.js';
export { RemoteError, type RemoteJobStatus, type JobState } from './remote/client.js';
export type { RequestKind } from './remote/envelope.js';
export { GenerationScope, type GenerateOptions, type GenerateOutput, type GenerateProgress, type TokenEvent } from './generate.js';
export { Tensor, type Dtype, type FromOptions, type NestedArray } from './tensor.js';
export { Tokenizer } from './tokenizer.js';
export { TraceProxy } from './trace/proxy.js';
export type { Envoy } from './trace/envoy.js';
export type { EnvoyOf, ModuleEnvoy, ListEnvoy, TupleValue, ValueOf, WriteOf, ApplyOf, ModuleDesc, ValueDesc, TensorWrite } from './trace/types.js';
// the type machinery behind EnvoyOf, exported so editors and the API docs can name it
export type { Item, TupleItems, Accessors, Deep, ValuesOf, OutputOf, InputsOf, NamedOutput, ChildDescs, ChildEnvoys, EnvoysOf, Reserved } from './trace/types.js';
export type { Dim } from './ops.js';
export type { ApplyRule, SourceOp } from './native.js';
export type { SourceEnvoy, OpEnvoy } from './trace/source.js';
export type { TraceInput } from './inputs.js';
export type { Manifest, ModuleEntry, Struct } from './manifest.js';
export { parseIndex, type IndexSpec, type IndexItem } from './indexspec.js';
import { native } from './native.js';

/** libtorch's version, CUDA availability and thread settings. */
export function runtimeInfo() {
  return native().info();
}

/** Sets libtorch's intra-op thread count; returns the count in effect. */
export function setNumThreads(n: number): number {
  return native().setNumThreads(n);
}
export { doctor, formatDoctor, inspect, type DoctorReport } from './doctor.js';
export { discover as findLibtorch, type Libtorch, type Discovery } from './install/libtorch.js';
