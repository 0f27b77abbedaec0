// The client's transport pieces: the error a server answers with, and a POST read whole over
// node:http's keep-alive pool (fetch costs ~0.6 ms more per request on loopback, most of a small
// remote trace's fixed cost; measured 0.72 against 0.13-0.17 ms for 3 KB up, 50 KB down).
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** An error answered by the server (or the job's failure). */
export class RemoteError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    /** the failing graph node, when the server names one */
    readonly node?: number,
    /** the message with node markers, for Graph.explain */
    readonly template?: string,
    /** seconds the server asked to wait (429, 503) */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'RemoteError';
  }
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export async function errorOf(res: Response): Promise<RemoteError> {
  let text = '';
  try {
    text = await res.text();
  } catch {
    // the body broke off: the status says what there is to say
  }
  return errorFrom(res.status, res.statusText, res.headers.get('retry-after'), text);
}

export function errorFrom(status: number, statusText: string, retryAfter: string | null | undefined, text: string): RemoteError {
  let body: { error?: { code?: string; message?: string; node?: number; template?: string } } = {};
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    // not JSON: a proxy's page
  }
  const e = body?.error ?? {};
  const ra = Number(retryAfter ?? null);
  return new RemoteError(e.message ?? `HTTP ${status} ${statusText}`, status, e.code ?? 'http_error', e.node, e.template, Number.isFinite(ra) ? ra : undefined);
}

/** Whether a refusal says "later" (429, 503) rather than failing: not when the server names the job's own state (the job failed). */
export function saysLater(status: number, jobState: unknown): boolean {
  return (status === 429 || status === 503) && jobState == null;
}

/** An answer read whole (the quiet submit's transport). */
export interface WholeAnswer {
  status: number;
  statusText: string;
  headers: IncomingHttpHeaders;
  bytes: Buffer;
}

// keep-alive connections shared by every client, as fetch's own pool is (idle ones do not keep
// the process alive, and are dropped before the server's announced keep-alive timeout)
const httpAgent = new HttpAgent({ keepAlive: true });
const httpsAgent = new HttpsAgent({ keepAlive: true });

/** One request over node:http(s) to `base + path`; resolves once the whole answer has arrived. */
export function exchange(base: string, method: string, path: string, body: Uint8Array, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<WholeAnswer> {
  return new Promise((resolve, reject) => {
    const url = new URL(base + path);
    const https = url.protocol === 'https:';
    const req = (https ? httpsRequest : httpRequest)(
      url,
      { method, agent: https ? httpsAgent : httpAgent, signal, headers: { ...headers, 'content-length': String(body.byteLength) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('close', () => res.complete || reject(new Error('the connection closed before the answer was complete')));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, bytes: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}
