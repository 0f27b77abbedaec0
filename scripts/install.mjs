// npm's install step, a convenience only (npm may skip install scripts): says which addon
// torchsight will load, and builds one from source into the cache when no prebuilt matches the
// libtorch found. Never fails the install; the library resolves everything again at first use.
// Its presence also stops npm from running `node-gyp rebuild` on binding.gyp by itself.
import { existsSync } from 'node:fs';

const loaderUrl = new URL('../dist/install/loader.js', import.meta.url);
// A git checkout before `npm run build`: setup builds the addon itself.
if (!existsSync(loaderUrl) || process.env.TORCHSIGHT_SKIP_INSTALL) process.exit(0);
try {
  const { resolveAddon, loadAddon } = await import(loaderUrl.href);
  const r = resolveAddon();
  if (r.choice) console.log(`torchsight: using ${r.choice.how}${r.choice.libtorch ? ` for libtorch ${r.choice.libtorch.version} (${r.choice.libtorch.source})` : ''}`);
  else if (r.buildCandidate && process.env.TORCHSIGHT_BUILD !== 'never') loadAddon(); // builds, then checks it loads
  else console.warn(`torchsight: no usable libtorch yet; it will look again at first use. Tried:\n  - ${r.tried.join('\n  - ')}`);
} catch (e) {
  console.warn(`torchsight: ${e.message}\n(the install goes on; run 'npx torchsight doctor' once libtorch is in place)`);
}
process.exit(0);
