// Runs once before the suite: the addon must be built (tests never build it) and the example
// models exported (cheap, seeded, skipped when present).
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export default function setup(): void {
  const root = join(import.meta.dirname, '..');
  const addon = process.env.TORCHSIGHT_ADDON ?? join(root, 'build', 'Release', 'torchsight.node');
  if (!existsSync(addon)) throw new Error(`native addon not built (${addon}): run 'npm run build:native' first`);
  execFileSync('bash', [join(root, 'scripts', 'make-models.sh')], { stdio: 'inherit' });
}
