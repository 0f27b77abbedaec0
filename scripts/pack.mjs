// Packs what npm publishes: the main package `torchsight` (with optionalDependencies on every
// prebuilt variant, added here so a git checkout never asks the registry for them) and, with
// --variant, the platform package @torchsight/<variant> holding a built torchsight.node.
//
//   node scripts/pack.mjs [--variant linux-x64-torch1.13-debian --addon-dir build/Release] [--out .cache/pack]
//
// Needs `npm run build` first (dist/ and the addon). Prints the tarball paths, one a line.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({ options: { variant: { type: 'string' }, 'addon-dir': { type: 'string', default: 'build/Release' }, out: { type: 'string', default: '.cache/pack' } } });
const out = resolve(root, values.out);
mkdirSync(out, { recursive: true });
const { PREBUILT } = await import(join(root, 'dist/install/prebuilt.js'));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
const tarballs = [];

// The platform package: the addon, the preload shim, a package.json that npm installs only on a
// matching os/cpu/libc.
if (values.variant) {
  const v = PREBUILT[values.variant];
  if (!v) throw new Error(`unknown variant ${values.variant}; known: ${Object.keys(PREBUILT).join(', ')}`);
  const addonDir = resolve(root, values['addon-dir']);
  for (const f of ['torchsight.node', 'torchsight_preload.node'])
    if (!existsSync(join(addonDir, f))) throw new Error(`${join(addonDir, f)} is missing: build first`);
  // The binary must be the libtorch series the variant names (a mislabelled package would crash users).
  const built = JSON.parse(
    execFileSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(join(addonDir, 'torchsight.node'))}).info()))`], { encoding: 'utf8' }),
  );
  if (!built.torch.startsWith(`${v.torch}.`)) throw new Error(`${addonDir} was built against libtorch ${built.torch}, not ${v.torch} as ${values.variant} says`);
  const stage = mkdtempSync(join(tmpdir(), 'torchsight-variant-'));
  for (const f of ['torchsight.node', 'torchsight_preload.node']) copyFileSync(join(addonDir, f), join(stage, f));
  const [os, cpu] = values.variant.split('-');
  writeFileSync(
    join(stage, 'package.json'),
    JSON.stringify(
      {
        name: `@torchsight/${values.variant}`,
        version: pkg.version,
        description: `torchsight's native addon for ${os}-${cpu}, built against libtorch ${built.torch}: ${v.libtorch}`,
        license: pkg.license,
        os: [os],
        cpu: [cpu],
        libc: ['glibc'],
        files: ['torchsight.node', 'torchsight_preload.node'],
        torchsight: { variant: values.variant, libtorch: built.torch, kind: v.kind },
      },
      null,
      2,
    ) + '\n',
  );
  writeFileSync(join(stage, 'README.md'), `# @torchsight/${values.variant}\n\nThe prebuilt native addon of [torchsight](https://www.npmjs.com/package/torchsight) for ${v.libtorch}. Install \`torchsight\`; it picks this package when that libtorch is on the machine.\n`);
  tarballs.push(join(out, npm(['pack', '--pack-destination', out, '--silent'], stage).trim().split('\n').pop()));
  rmSync(stage, { recursive: true, force: true });
}

// The main package, staged so its package.json can list the platform packages.
const stage = mkdtempSync(join(tmpdir(), 'torchsight-main-'));
const files = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], root))[0].files.map((f) => f.path);
for (const f of files) {
  mkdirSync(dirname(join(stage, f)), { recursive: true });
  cpSync(join(root, f), join(stage, f));
}
const published = { ...pkg, optionalDependencies: Object.fromEntries(Object.keys(PREBUILT).map((v) => [`@torchsight/${v}`, pkg.version])) };
delete published.devDependencies;
writeFileSync(join(stage, 'package.json'), JSON.stringify(published, null, 2) + '\n');
tarballs.push(join(out, npm(['pack', '--pack-destination', out, '--silent', '--ignore-scripts'], stage).trim().split('\n').pop()));
rmSync(stage, { recursive: true, force: true });
console.log(tarballs.join('\n'));
