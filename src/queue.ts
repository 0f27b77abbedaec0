// The request queue: one forward at a time per model. Every native request a model makes
// (traces, sessions, generations, the warm-up, doctor's inspect) goes through here, so they run
// in the order they were made and dispose() can wait for the last.
import { CancelFlag } from './native.js';

/** What a request needs besides its work: its abort signal and native cancel flag, and how to word its errors. */
export interface RequestContext {
  signal?: AbortSignal;
  /** set to CancelFlag.Abort when the signal aborts (the native side polls it) */
  cancel?: Int32Array;
  /** rewrites a native error's message (the graph's node markers to source lines) */
  explain?: (message: string) => string;
}

export class RequestQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0; // requests queued or running

  /**
   * Runs `start` after the earlier requests and gives its result to `then`, with the one await
   * of a trace (each level of async costs a microtask hop): an aborted signal rejects with its
   * reason (and sets the native cancel flag), and native errors are reworded by `explain`
   * (keeping their code); errors thrown by `then` pass as they are.
   */
  async run<T, U>(ctx: RequestContext, start: () => Promise<T>, then: (raw: T) => U): Promise<U> {
    const { signal, cancel, explain } = ctx;
    // the abort listener and the deferred start are made only when needed: a trace with no
    // signal after an idle queue allocates neither
    const onAbort = signal && (() => cancel && Atomics.store(cancel, 0, CancelFlag.Abort));
    if (signal) signal.addEventListener('abort', onAbort!, { once: true });
    // with nothing queued the request starts now, not a microtask later (a trace after a forward
    // is the common case, and each hop costs there)
    let run: Promise<T>;
    if (this.#pending === 0) {
      try {
        signal?.throwIfAborted();
        run = start();
      } catch (e) {
        run = Promise.reject(e);
      }
    } else {
      run = this.#tail.then(() => {
        signal?.throwIfAborted();
        return start();
      });
    }
    this.#pending++;
    this.#tail = run.then(this.#settled, this.#settled);
    let raw: T;
    try {
      raw = await run;
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (!explain) throw e;
      const err = new Error(explain((e as Error).message));
      (err as Error & { code?: string }).code = (e as Error & { code?: string }).code;
      throw err;
    } finally {
      if (signal) signal.removeEventListener('abort', onAbort!);
    }
    return then(raw);
  }

  /** counts a request as settled (one function for all, not two closures a request) */
  readonly #settled = (): void => {
    this.#pending--;
  };

  /** Resolves once every request made so far has settled. */
  async idle(): Promise<void> {
    await this.#tail;
  }
}
