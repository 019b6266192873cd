// A minimal client for the Docker Engine API over its unix socket: GET requests with JSON
// answers, a hard timeout, and errors that name the socket.
import { CrashcartError } from '../core/errors.js';

export const ENGINE_TIMEOUT_MS = 2_000;

export interface EngineResponse {
  status: number;
  body: unknown;
}

/** GET `path` from the daemon at `socket`; rejects with a CrashcartError naming the socket. */
export async function engineGet(socket: string, path: string, timeoutMs = ENGINE_TIMEOUT_MS): Promise<EngineResponse> {
  // loaded on first use: startup stays cheap on hosts without docker
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (message: string, hint: string, cause?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new CrashcartError(message, { hint, cause }));
    };
    const req = request({ socketPath: socket, path, method: 'GET', agent: false, headers: { Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => fail(`reading from the docker daemon at ${socket} failed: ${err.message}`, 'check that dockerd is healthy', err));
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch { /* not JSON: keep the text */ }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    const timer = setTimeout(() => {
      fail(`the docker daemon at ${socket} did not answer within ${timeoutMs / 1000} s`, 'check that dockerd is running and healthy, or set DOCKER_HOST');
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'no such socket'
        : err.code === 'ECONNREFUSED' ? 'connection refused (no daemon listening)'
          : err.code === 'EACCES' ? 'permission denied' : err.message;
      fail(`cannot reach the docker daemon at ${socket}: ${why}`, 'start dockerd, or point DOCKER_HOST at its socket (unix://PATH)', err);
    });
    req.end();
  });
}

/** The daemon's own message from an error answer ({"message": ...}), else the status. */
export function engineMessage(res: EngineResponse): string {
  const b = res.body as { message?: unknown } | undefined;
  return typeof b?.message === 'string' ? b.message : `HTTP ${res.status}`;
}
