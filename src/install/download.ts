// `torchsight libtorch download`: fetches PyTorch's own libtorch zip (CPU or a CUDA build) into
// the cache, where discovery finds it (see libtorch.ts). The version defaults to the one the
// prebuilt binaries are built against, so no compiler is needed afterwards.
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { cacheDir, describe, variantOf, type Libtorch } from './libtorch.js';
import { PREBUILT } from './prebuilt.js';
import { libtorchMirror } from '../settings.js';

/** The libtorch version downloads default to: the newest series with prebuilt binaries. */
export const DEFAULT_LIBTORCH = '2.11.0';

export interface DownloadOptions {
  /** libtorch version, e.g. '2.11.0' */
  version?: string;
  /** 'cpu' (default), or a CUDA version: '12.8', '13.0', or just '12' / '13' for the newest prebuilt one */
  cuda?: string;
  /** base address (default https://download.pytorch.org, or TORCHSIGHT_LIBTORCH_MIRROR) */
  mirror?: string;
  /** the zip's exact address, overriding version/cuda/mirror */
  url?: string;
  /** bytes received of the total (0 when the server does not say) */
  onProgress?: (received: number, total: number) => void;
  /** extraction started */
  onExtract?: () => void;
}

/** 'cpu' or 'cuXYZ' for a --cuda value, preferring CUDA versions that have a prebuilt binary. */
export function cudaTag(cuda: string | undefined, version: string): string {
  if (!cuda || cuda === 'cpu') return 'cpu';
  const m = cuda.match(/^(?:cu)?(\d+)(?:\.(\d+|x))?$/);
  if (!m) throw new Error(`--cuda must be 'cpu' or a CUDA version like 12.8 or 13.0, got '${cuda}'`);
  if (m[2] !== undefined && m[2] !== 'x') return `cu${m[1]}${m[2]}`;
  // '12' or '12.x': the newest CUDA 12 build torchsight ships a prebuilt for
  const series = version.match(/^(\d+\.\d+)/)?.[1];
  const tags = Object.values(PREBUILT)
    .filter((v) => v.torch === series && v.kind.startsWith(`cu${m[1]}`) && v.kind.length === `cu${m[1]}`.length + 1)
    .map((v) => v.kind)
    .sort();
  if (!tags.length) throw new Error(`no prebuilt binary for libtorch ${version} with CUDA ${m[1]}; give the exact CUDA version (e.g. --cuda ${m[1]}.8) and build from source`);
  return tags[tags.length - 1];
}

/** The address of PyTorch's libtorch zip for a version and tag (cpu, cu128...). */
export function libtorchUrl(version: string, tag: string, mirror = libtorchMirror()): string {
  const [major, minor] = version.split('.').map(Number);
  // PyTorch named its C++11-ABI zips 'cxx11-abi' until it dropped the old ABI (2.8).
  const name = major * 100 + minor >= 208 ? 'libtorch-shared-with-deps' : 'libtorch-cxx11-abi-shared-with-deps';
  return `${mirror.replace(/\/$/, '')}/libtorch/${tag}/${name}-${version}%2B${tag}.zip`;
}

function extract(zip: string, into: string): void {
  const tries: [string, string[]][] = [
    ['unzip', ['-q', '-o', zip, '-d', into]],
    ['python3', ['-m', 'zipfile', '-e', zip, into]],
  ];
  const errors: string[] = [];
  for (const [cmd, args] of tries) {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status === 0) return;
    errors.push(`${cmd}: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}`);
  }
  throw new Error(`cannot unpack ${zip} (${errors.join('; ')})`);
}

/** Downloads and unpacks a libtorch into the cache; returns it as discovery will see it. */
export async function downloadLibtorch(o: DownloadOptions = {}): Promise<Libtorch> {
  const version = o.version ?? DEFAULT_LIBTORCH;
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`--version must look like 2.11.0, got '${version}'`);
  const tag = cudaTag(o.cuda, version);
  const url = o.url ?? libtorchUrl(version, tag, o.mirror);
  const root = join(cacheDir(), 'libtorch');
  const dest = join(root, `${version}+${tag}`);
  mkdirSync(root, { recursive: true });
  // as discovery will describe it (the same source name as discover() gives a download)
  const installed = () => describe(`download (${version}+${tag})`, join(dest, 'libtorch', 'lib'), join(dest, 'libtorch', 'share', 'cmake', 'Torch'));
  if (existsSync(join(dest, 'libtorch', 'lib', 'libc10.so'))) {
    const t = installed();
    if (typeof t !== 'string') return t;
  }
  const part = `${dest}.zip.part`;
  const res = await fetch(url).catch((e: Error) => {
    throw new Error(`cannot reach ${url}: ${(e.cause as Error | undefined)?.message ?? e.message}`);
  });
  if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length') ?? 0);
  let received = 0;
  o.onProgress?.(0, total);
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (chunk: Buffer) => {
    received += chunk.length;
    o.onProgress?.(received, total);
  });
  try {
    await pipeline(body, createWriteStream(part));
    if (total && received !== total) throw new Error(`${url}: the download stopped at ${received} of ${total} bytes`);
    o.onExtract?.();
    const staging = `${dest}.partial`;
    rmSync(staging, { recursive: true, force: true });
    extract(part, staging);
    if (!existsSync(join(staging, 'libtorch', 'lib', 'libc10.so'))) {
      rmSync(staging, { recursive: true, force: true });
      throw new Error(`${url} is not a libtorch zip (no libtorch/lib/libc10.so inside)`);
    }
    rmSync(dest, { recursive: true, force: true });
    renameSync(staging, dest);
  } finally {
    if (existsSync(part)) unlinkSync(part);
  }
  const t = installed();
  if (typeof t === 'string') throw new Error(t);
  if (!PREBUILT[variantOf(t)]) process.emitWarning(`libtorch ${t.version} has no prebuilt torchsight binary (${variantOf(t)}): first use builds one from source`, 'TorchsightWarning');
  return t;
}
