// The prebuilt binaries torchsight ships: one npm package per platform and libtorch, listed in
// package.json's optionalDependencies (npm installs those whose os/cpu/libc match). Each holds
// torchsight.node, built against that libtorch, and torchsight_preload.node.
//
// The require strings are literal, one per package, so bundlers and `npm ls` see every one
// (the sharp / node-llama-cpp pattern). Keep this table, package.json's optionalDependencies
// and the matrix in .github/workflows/prebuilt.yml the same (tests/install.test.ts checks).
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

const require = createRequire(import.meta.url);

export interface PrebuiltVariant {
  /** libtorch series it links ('major.minor'). */
  torch: string;
  /** 'debian' (Debian 12's libtorch-dev, versioned sonames), 'cpu', or 'cuXYZ'. */
  kind: string;
  /** Where that libtorch comes from, for messages and the CI workflow. */
  libtorch: string;
  /** The package folder, or throws when the package is not installed. */
  resolve: () => string;
}

export const PREBUILT: Record<string, PrebuiltVariant> = {
  'linux-x64-torch1.13-debian': {
    torch: '1.13',
    kind: 'debian',
    libtorch: "Debian 12's libtorch-dev (apt-get install libtorch-dev)",
    resolve: () => dirname(require.resolve('@torchsight/linux-x64-torch1.13-debian/package.json')),
  },
  'linux-x64-torch2.11-cpu': {
    torch: '2.11',
    kind: 'cpu',
    libtorch: 'PyTorch 2.11 CPU (pip install torch --index-url https://download.pytorch.org/whl/cpu, or libtorch 2.11.0+cpu)',
    resolve: () => dirname(require.resolve('@torchsight/linux-x64-torch2.11-cpu/package.json')),
  },
  'linux-x64-torch2.11-cu128': {
    torch: '2.11',
    kind: 'cu128',
    libtorch: 'PyTorch 2.11 with CUDA 12.8 (pip torch==2.11.*+cu128, or libtorch 2.11.0+cu128)',
    resolve: () => dirname(require.resolve('@torchsight/linux-x64-torch2.11-cu128/package.json')),
  },
  'linux-x64-torch2.11-cu130': {
    torch: '2.11',
    kind: 'cu130',
    libtorch: 'PyTorch 2.11 with CUDA 13.0 (pip torch==2.11.*+cu130, or libtorch 2.11.0+cu130)',
    resolve: () => dirname(require.resolve('@torchsight/linux-x64-torch2.11-cu130/package.json')),
  },
};

/** The installed package folder of a variant, or undefined. */
export function prebuiltDir(variant: string): string | undefined {
  const v = PREBUILT[variant];
  if (!v) return undefined;
  try {
    return v.resolve();
  } catch {
    return undefined;
  }
}
