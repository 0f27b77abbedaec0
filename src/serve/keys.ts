// API keys: a JSON file of named keys, each stored only as its SHA-256 hash (keys are 192 random
// bits, so a fast hash is as safe as a slow one), with an allow-list of models, a limit on the
// requests it may have queued or running, and a rate quota. A presented key is hashed and
// compared with every stored hash in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

export interface KeyEntry {
  name: string;
  /** sha256 of the key, hex */
  hash: string;
  /** models it may use; null: all */
  models: string[] | null;
  /** requests queued or running at once (null: the server's default) */
  concurrency: number | null;
  /** requests per minute (null: the server's default) */
  ratePerMinute: number | null;
  created: string;
}

interface KeyFile {
  format: 'torchsight-keys';
  version: 1;
  keys: KeyEntry[];
}

const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;
const HASH = /^[0-9a-f]{64}$/;

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** Reads a key file; a missing file is an empty one. Refuses anything malformed, naming the entry. */
export function readKeys(file: string): KeyEntry[] {
  if (!existsSync(file)) return [];
  let j: KeyFile;
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as KeyFile;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (j === null || typeof j !== 'object' || j.format !== 'torchsight-keys' || j.version !== 1 || !Array.isArray(j.keys))
    throw new Error(`${file}: not a torchsight key file (expected {"format": "torchsight-keys", "version": 1, "keys": [...]})`);
  const posInt = (v: unknown) => v === null || (Number.isSafeInteger(v) && (v as number) > 0);
  j.keys.forEach((k, i) => {
    const ok =
      k !== null &&
      typeof k === 'object' &&
      typeof k.name === 'string' &&
      NAME.test(k.name) &&
      typeof k.hash === 'string' &&
      HASH.test(k.hash) &&
      (k.models === null || (Array.isArray(k.models) && k.models.every((m) => typeof m === 'string'))) &&
      posInt(k.concurrency ?? null) &&
      posInt(k.ratePerMinute ?? null);
    if (!ok) throw new Error(`${file}: key ${i} is malformed (name, a sha256 hex hash, models: string[] or null, concurrency and ratePerMinute: positive integers or null)`);
  });
  return j.keys.map((k) => ({ ...k, concurrency: k.concurrency ?? null, ratePerMinute: k.ratePerMinute ?? null }));
}

function writeKeys(file: string, keys: KeyEntry[]): void {
  const body: KeyFile = { format: 'torchsight-keys', version: 1, keys };
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

/** Adds a key named `name`; returns the key itself (shown once, never stored). */
export function addKey(file: string, name: string, options: { models?: string[] | null; concurrency?: number | null; ratePerMinute?: number | null } = {}): string {
  if (!NAME.test(name)) throw new Error(`key name '${name}' must be 1 to 64 letters, digits or _ . @ -`);
  const keys = readKeys(file);
  if (keys.some((k) => k.name === name)) throw new Error(`${file}: a key named '${name}' exists; remove it first`);
  for (const v of [options.concurrency, options.ratePerMinute])
    if (v !== undefined && v !== null && !(Number.isSafeInteger(v) && v > 0)) throw new Error('concurrency and rate must be positive integers');
  const key = `tsk_${randomBytes(24).toString('base64url')}`;
  keys.push({
    name,
    hash: hashKey(key),
    models: options.models?.length ? options.models : null,
    concurrency: options.concurrency ?? null,
    ratePerMinute: options.ratePerMinute ?? null,
    created: new Date().toISOString(),
  });
  writeKeys(file, keys);
  return key;
}

export function removeKey(file: string, name: string): boolean {
  const keys = readKeys(file);
  const left = keys.filter((k) => k.name !== name);
  if (left.length === keys.length) return false;
  writeKeys(file, left);
  return true;
}

/** The stored keys, checked in constant time. */
export class KeyRing {
  readonly #entries: { entry: KeyEntry; hash: Buffer }[];

  constructor(entries: KeyEntry[]) {
    this.#entries = entries.map((entry) => ({ entry, hash: Buffer.from(entry.hash, 'hex') }));
  }

  static fromFile(file: string): KeyRing {
    if (!existsSync(file)) throw new Error(`${file}: no such key file (make one with: torchsight keys add ${file} <name>)`);
    return new KeyRing(readKeys(file));
  }

  /** The entry a presented key belongs to, or undefined. Every stored hash is compared. */
  find(key: string): KeyEntry | undefined {
    const h = createHash('sha256').update(key, 'utf8').digest();
    let found: KeyEntry | undefined;
    for (const { entry, hash } of this.#entries) if (timingSafeEqual(h, hash) && !found) found = entry;
    return found;
  }
}

/** The `keys` command: add, list, remove. Returns the exit code; output goes to `out`. */
export function keysCommand(args: string[], out: (line: string) => void): number {
  const [sub, file, ...rest] = args;
  const usage = 'usage: torchsight keys add <file> <name> [--models a,b] [--concurrency N] [--rate N-per-minute]\n       torchsight keys list <file>\n       torchsight keys remove <file> <name>';
  if (!file || !['add', 'list', 'remove'].includes(sub)) {
    out(usage);
    return 2;
  }
  if (sub === 'list') {
    for (const k of readKeys(file))
      out(`${k.name}\tmodels: ${k.models?.join(',') ?? 'all'}\tconcurrency: ${k.concurrency ?? 'default'}\trate: ${k.ratePerMinute ?? 'default'}/min\tcreated ${k.created}`);
    return 0;
  }
  const name = rest[0];
  if (!name || name.startsWith('--')) {
    out(usage);
    return 2;
  }
  if (sub === 'remove') {
    if (!removeKey(file, name)) {
      out(`${file}: no key named '${name}'`);
      return 1;
    }
    out(`removed key '${name}'`);
    return 0;
  }
  const opts: { models?: string[]; concurrency?: number; ratePerMinute?: number } = {};
  for (let i = 1; i < rest.length; i += 2) {
    const [flag, value] = [rest[i], rest[i + 1]];
    if (value === undefined) {
      out(`${flag}: needs a value\n${usage}`);
      return 2;
    }
    if (flag === '--models') opts.models = value.split(',').map((s) => s.trim()).filter(Boolean);
    else if (flag === '--concurrency') opts.concurrency = Number(value);
    else if (flag === '--rate') opts.ratePerMinute = Number(value);
    else {
      out(`unknown option ${flag}\n${usage}`);
      return 2;
    }
  }
  const key = addKey(file, name, opts);
  out(`added key '${name}' to ${file}${opts.models ? ` for models ${opts.models.join(', ')}` : ''}; it is shown only now:`);
  out(key);
  return 0;
}
