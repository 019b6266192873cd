// A minimal client for the Docker Engine API over its unix socket: GET requests with JSON
// answers, a hard deadline, and errors that name the socket.
import { CrashcartError } from '../core/errors.js';
import { abortError, onAbort, withDeadline } from './deadline.js';

export const ENGINE_TIMEOUT_MS = 2_000;

export interface EngineResponse {
  status: number;
  body: unknown;
}

const HUNG_HINT = 'check that dockerd is running and healthy, or set DOCKER_HOST';

/**
 * GET `path` from the daemon at `socket`; rejects with a CrashcartError naming the socket.
 * After `timeoutMs`, or when `signal` aborts, the request and its socket are destroyed.
 */
export async function engineGet(socket: string, path: string, timeoutMs = ENGINE_TIMEOUT_MS, signal?: AbortSignal): Promise<EngineResponse> {
  return withDeadline(timeoutMs, signal, (sig) => get(socket, path, sig));
}

async function get(socket: string, path: string, signal: AbortSignal): Promise<EngineResponse> {
  // loaded on first use: startup stays cheap on hosts without docker
  const [{ request }, { createConnection }] = await Promise.all([import('node:http'), import('node:net')]);
  const what = `the docker daemon at ${socket}`;
  if (signal.aborted) throw abortError(signal, what, HUNG_HINT);
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = () => {
      if (settled) return false;
      settled = true;
      stop();
      return true;
    };
    const fail = (err: Error) => {
      if (!settle()) return;
      req.destroy();
      reject(err);
    };
    // our own connection and no agent: the agent's first request costs ~15 ms of setup
    const req = request({ createConnection: () => createConnection(socket), path, method: 'GET', headers: { Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => fail(new CrashcartError(`reading from ${what} failed: ${err.message}`, { hint: 'check that dockerd is healthy', cause: err })));
      res.on('end', () => {
        if (!settle()) return;
        req.destroy(); // one request per connection
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch { /* not JSON: keep the text */ }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    const stop = onAbort(signal, () => fail(abortError(signal, what, HUNG_HINT)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'no such socket'
        : err.code === 'ECONNREFUSED' ? 'connection refused (no daemon listening)'
          : err.code === 'EACCES' ? 'permission denied' : err.message;
      fail(new CrashcartError(`cannot reach ${what}: ${why}`, { hint: 'start dockerd, or point DOCKER_HOST at its socket (unix://PATH)', cause: err }));
    });
    req.end();
  });
}

/** The daemon's own message from an error answer ({"message": ...}), else the status. */
export function engineMessage(res: EngineResponse): string {
  const b = res.body as { message?: unknown } | undefined;
  return typeof b?.message === 'string' ? b.message : `HTTP ${res.status}`;
}
