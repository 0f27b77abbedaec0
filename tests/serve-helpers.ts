// Helpers of the server tests: a real server on 127.0.0.1 (port 0) serving the example models,
// and requests recorded on a local copy of the same model, sent, and resolved as a client would.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { LanguageModel } from '../src/index.js';
import { encodeRequest } from '../src/remote/envelope.js';
import { RemoteClient, type SubmitOptions } from '../src/remote/client.js';
import { loadServedModel, recordGenerate, recordSession, recordTrace } from '../src/serve/runner.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/serve/server.js';
import type { GenerateOptions } from '../src/generate.js';
import { MODELS, ROOT, childEnv } from './helpers.js';

/** Logs of in-process servers, kept for a failing test to print. */
export const serverLogs: string[] = [];
const logSink = new Writable({
  write(chunk, _enc, done) {
    serverLogs.push(String(chunk));
    if (serverLogs.length > 2000) serverLogs.splice(0, 1000);
    done();
  },
});

export async function serveGpt2(options: Partial<ServerOptions> = {}): Promise<RunningServer> {
  const model = await loadServedModel(MODELS.gpt2, 'gpt2');
  return startServer({ models: [model], port: 0, logLevel: 'warn', logStream: logSink, ...options });
}

export function clientOf(server: RunningServer | string, apiKey?: string): RemoteClient {
  return new RemoteClient(typeof server === 'string' ? server : server.url, { apiKey, quiet: true, backoffMs: 20 });
}

/** model.trace(input, fn) through the server. */
export async function remoteTrace<R>(client: RemoteClient, model: LanguageModel, input: any, fn?: any, options: SubmitOptions = {}): Promise<R> {
  const rec = recordTrace(model, input, fn);
  const res = await client.submit('gpt2', 'trace', await encodeRequest(rec.request), { quiet: true, ...options });
  return rec.resolve(res) as R;
}

export async function remoteSession<R>(client: RemoteClient, model: LanguageModel, fn: (s: any) => R): Promise<any> {
  const rec = recordSession(model, fn);
  const res = await client.submit('gpt2', 'session', await encodeRequest(rec.request), { quiet: true });
  return rec.resolve(res);
}

export async function remoteGenerate(client: RemoteClient, model: LanguageModel, input: any, options: GenerateOptions, fn?: any, submit: SubmitOptions = {}) {
  const rec = recordGenerate(model, input, options, fn);
  const res = await client.submit('gpt2', 'generate', await encodeRequest(rec.request), { quiet: true, ...submit });
  return rec.resolve(res);
}

/** `torchsight serve` in a child process; resolves once it prints its URL. */
export async function spawnServe(args: string[]): Promise<{ child: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null> }> {
  return spawnCli('serve', args, /listening on (\S+)/);
}

/** `torchsight <cmd> ...args` in a child process; resolves once stdout matches `ready` (its first group is `url`). */
export async function spawnCli(cmd: string, args: string[], ready: RegExp): Promise<{ child: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli.ts'), cmd, ...args], {
    cwd: ROOT,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start:\n${err}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] ?? m[0]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited with ${code}:\n${err}`));
    });
  });
  return { child, url, stderr: () => err, exited };
}

export { MODELS };
