// Builds the addon with cmake-js (the build of record). Extra arguments pass through,
// e.g. `npm run build:native -- --debug`. Uses both cores by default.
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const cli = require.resolve('cmake-js/bin/cmake-js');
const jobs = String(Math.max(1, cpus().length));
const args = [cli, 'compile', '--parallel', jobs, ...process.argv.slice(2)];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs } });
process.exit(r.status ?? 1);
