// API keys: `torchsight keys` prints a new key once and stores only its hash; the server wants a
// key for everything but health (401), keeps a key to its models (403) and its jobs (404 to
// others), and without keys serves loopback only.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LanguageModel, Tensor } from '../src/index.js';
import { RemoteClient } from '../src/remote/client.js';
import { KeyRing, addKey, readKeys } from '../src/serve/keys.js';
import { loadServedModel } from '../src/serve/runner.js';
import { startServer, type RunningServer } from '../src/serve/server.js';
import { ROOT, childEnv } from './helpers.js';
import { MODELS, remoteTrace, serveGpt2, serverLogs } from './serve-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'torchsight-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), 'keys', ...args], { cwd: ROOT, env: childEnv(), encoding: 'utf8' });
}

describe('torchsight keys', () => {
  it('adds a key, printed once alone on the last line, storing only its hash; lists and removes', () => {
    const file = join(dir, 'keys.json');
    const add = cli('add', file, 'alice', '--models', 'gpt2,llama', '--concurrency', '3', '--rate', '60');
    expect(add.status, add.stderr).toBe(0);
    const lines = add.stdout.trimEnd().split('\n');
    const key = lines[lines.length - 1];
    expect(key).toMatch(/^tsk_[A-Za-z0-9_-]{32}$/);
    const stored = readFileSync(file, 'utf8');
    expect(stored).not.toContain(key);
    expect(stored).not.toContain(key.slice(4, 20));
    const [entry] = readKeys(file);
    expect(entry).toMatchObject({ name: 'alice', models: ['gpt2', 'llama'], concurrency: 3, ratePerMinute: 60 });
    expect(entry.hash).toBe(createHash('sha256').update(key).digest('hex'));
    expect(new KeyRing(readKeys(file)).find(key)?.name).toBe('alice');
    expect(new KeyRing(readKeys(file)).find(key + 'x')).toBeUndefined();
    expect(cli('add', file, 'alice').status).toBe(1); // names are unique
    const list = cli('list', file);
    expect(list.stdout).toMatch(/^alice\tmodels: gpt2,llama\tconcurrency: 3\trate: 60\/min/);
    expect(list.stdout).not.toContain(key);
    expect(cli('remove', file, 'alice').status).toBe(0);
    expect(readKeys(file)).toEqual([]);
    expect(cli('remove', file, 'alice').status).toBe(1);
    expect(cli('frobnicate', file).status).toBe(2);
  });

  it('refuses a malformed key file, naming it', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ format: 'torchsight-keys', version: 1, keys: [{ name: 'x', hash: 'abc' }] }));
    expect(() => readKeys(file)).toThrow(/bad\.json: key 0 is malformed/);
  });
});

describe('a server with keys', () => {
  let server: RunningServer;
  let model: LanguageModel;
  let alice: string;
  let bob: string;
  beforeAll(async () => {
    const file = join(dir, 'server-keys.json');
    alice = addKey(file, 'alice');
    bob = addKey(file, 'bob', { models: ['llama'] });
    model = await LanguageModel.load(MODELS.gpt2);
    server = await serveGpt2({ keys: KeyRing.fromFile(file), logLevel: 'info' });
  });
  afterAll(async () => {
    await server?.close();
    await model?.dispose();
  });

  it('401 without a key or with a wrong one, 403 for a model the key may not use', async () => {
    const fn = (m: any) => m.output.logits;
    const none = new RemoteClient(server.url, { quiet: true, apiKey: '' });
    expect(await remoteTrace(none, model, 'Hi', fn).catch((e) => e)).toMatchObject({ status: 401, code: 'unauthorized' });
    const r = await fetch(`${server.url}/v1/models`);
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toBe('Bearer');
    expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
    // no spelling of a path reaches a model's data without a key
    for (const p of ['/v1/models/gpt2', '/v1/models/gpt2/tokenizer.json', '/v1/models/%67pt2/tokenizer.json', '/v1/jobs/x', '/v1/jobs/x/result'])
      expect((await fetch(server.url + p)).status, p).toBe(401);
    for (const p of ['//v1/models', '/V1/models', '/v1/models/', '/v1/./models', '/v1/models/gpt2/../gpt2/tokenizer.json'])
      expect([401, 404], p).toContain((await fetch(server.url + p)).status);
    const wrong = new RemoteClient(server.url, { quiet: true, apiKey: alice.slice(0, -1) + (alice.endsWith('A') ? 'B' : 'A') });
    expect(await remoteTrace(wrong, model, 'Hi', fn).catch((e) => e)).toMatchObject({ status: 401 });
    const b = new RemoteClient(server.url, { quiet: true, apiKey: bob });
    expect(await remoteTrace(b, model, 'Hi', fn).catch((e) => e)).toMatchObject({ status: 403, code: 'forbidden' });
    expect(await b.models()).toEqual([]);
    const a = new RemoteClient(server.url, { quiet: true, apiKey: alice });
    const out = await remoteTrace<Tensor>(a, model, 'Hi', fn);
    const local = (await model.trace('Hi', fn)) as Tensor;
    expect(Array.from(out.data() as Float32Array)).toEqual(Array.from(local.data() as Float32Array));
    expect((await a.models()).map((m) => m.name)).toEqual(['gpt2']);
  });

  it("a key's jobs are its own", async () => {
    const a = new RemoteClient(server.url, { quiet: true, apiKey: alice });
    const { recordTrace } = await import('../src/serve/runner.js');
    const { encodeRequest } = await import('../src/remote/envelope.js');
    const job = await a.submit('gpt2', 'trace', await encodeRequest(recordTrace(model, 'Hi', (m: any) => m.output.logits).request), { blocking: false });
    await job.result();
    const b = new RemoteClient(server.url, { quiet: true, apiKey: bob });
    expect(await b.job(job.id).status().catch((e) => e)).toMatchObject({ status: 404, code: 'no_job' });
    expect(await b.cancel(job.id).catch((e) => e)).toMatchObject({ status: 404 });
    expect((await a.job(job.id).status()).state).toBe('done');
  });

  it('logs requests with their job ids and key names, never a key', () => {
    const logs = serverLogs.join('');
    expect(logs).toMatch(/"msg":"job queued"/);
    expect(logs).toMatch(/"key":"alice"/);
    expect(logs).toMatch(/"reqId":"req-/);
    for (const k of [alice, bob]) expect(logs).not.toContain(k.slice(4));
  });
});

describe('without keys', () => {
  it('refuses to start on a host other than loopback', async () => {
    const m = await loadServedModel(MODELS.gpt2, 'gpt2');
    try {
      await expect(startServer({ models: [m], host: '0.0.0.0', port: 0, logLevel: 'silent' })).rejects.toThrow(/refusing to serve on 0\.0\.0\.0 without keys/);
    } finally {
      await m.dispose();
    }
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), 'serve', MODELS.gpt2, '--host', '0.0.0.0', '--port', '0'], { cwd: ROOT, env: childEnv(), encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/refusing to serve on 0\.0\.0\.0 without keys/);
  });
});
