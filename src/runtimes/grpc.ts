// Just enough gRPC for containerd's list calls: unary requests over HTTP/2 on a unix
// socket, and a protobuf reader/writer for the few messages involved. No dependency, no
// generated code: every field crashcart reads is named where it is decoded.
import type { ClientHttp2Session } from 'node:http2';
import { CrashcartError } from '../core/errors.js';
import { abortError, onAbort, seconds } from './deadline.js';

export const GRPC_TIMEOUT_MS = 2_000;

const malformed = (why: string) => new CrashcartError(`malformed protobuf: ${why}`, { code: 'EPROTO', hint: "is CONTAINERD_ADDRESS containerd's gRPC socket?" });

// --- protobuf -------------------------------------------------------------------------

/** A decoded message: field number -> its values (varints as numbers, the rest as bytes). */
export type Fields = Map<number, (number | Buffer)[]>;

function varint(buf: Buffer, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = at; i < buf.length; i++) {
    const b = buf[i];
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return [value, i + 1];
    if (i - at >= 9) break;
  }
  throw malformed('bad varint');
}

export function decode(buf: Buffer): Fields {
  const out: Fields = new Map();
  let at = 0;
  while (at < buf.length) {
    const [key, next] = varint(buf, at);
    at = next;
    const field = Math.floor(key / 8);
    let value: number | Buffer;
    switch (key & 7) {
      case 0:
        [value, at] = varint(buf, at);
        break;
      case 1:
        value = buf.subarray(at, at + 8);
        at += 8;
        break;
      case 2: {
        const [len, start] = varint(buf, at);
        value = buf.subarray(start, start + len);
        at = start + len;
        break;
      }
      case 5:
        value = buf.subarray(at, at + 4);
        at += 4;
        break;
      default:
        throw malformed(`wire type ${key & 7}`);
    }
    if (at > buf.length) throw malformed('truncated field');
    const list = out.get(field);
    if (list) list.push(value);
    else out.set(field, [value]);
  }
  return out;
}

export const bytesOf = (f: Fields, n: number): Buffer[] => (f.get(n) ?? []).filter((v): v is Buffer => Buffer.isBuffer(v));
export const str = (f: Fields, n: number): string => bytesOf(f, n).at(-1)?.toString('utf8') ?? '';
export const num = (f: Fields, n: number): number => {
  const v = f.get(n)?.at(-1);
  return typeof v === 'number' ? v : 0;
};
/** A map<string, string> field (repeated entries of key = 1, value = 2). */
export const stringMap = (f: Fields, n: number): Record<string, string> =>
  Object.fromEntries(bytesOf(f, n).map((e) => {
    const entry = decode(e);
    return [str(entry, 1), str(entry, 2)];
  }));

function encodeVarint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 127) {
    bytes.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

/** A message of string fields: [[field number, value], ...]. */
export function encodeStrings(fields: [number, string][]): Buffer {
  return Buffer.concat(fields.flatMap(([n, s]) => {
    const b = Buffer.from(s, 'utf8');
    return [encodeVarint(n * 8 + 2), encodeVarint(b.length), b];
  }));
}

// --- gRPC -----------------------------------------------------------------------------

/** gRPC status codes that say more than their number. */
const STATUS: Record<number, string> = { 5: 'not found', 7: 'permission denied', 12: 'unimplemented', 14: 'unavailable' };

export interface GrpcClient {
  /** One unary call; resolves with the response message's bytes. */
  call(path: string, request: Buffer, headers?: Record<string, string>): Promise<Buffer>;
  /** Ends the session and its socket (calls still in flight reject). */
  close(): void;
}

/**
 * A client on the unix socket `socket`; `what` names the daemon in errors. Connecting and
 * each call have `timeoutMs`; when one passes, or `signal` aborts, the whole session and
 * its socket are destroyed and every call in flight rejects: a daemon that accepted the
 * connection and hangs must not keep the event loop alive.
 */
export async function grpcClient(socket: string, what: string, timeoutMs = GRPC_TIMEOUT_MS, signal?: AbortSignal): Promise<GrpcClient> {
  // loaded on first use: startup stays cheap on hosts without containerd
  const [{ connect }, { createConnection }] = await Promise.all([import('node:http2'), import('node:net')]);
  const hint = `start ${what}, or point CONTAINERD_ADDRESS at its socket`;
  const where = `${what} at ${socket}`;
  const hungHint = `check that ${what} is running and healthy`;
  if (signal?.aborted) throw abortError(signal, where, hungHint);

  const sock = createConnection(socket);
  let session: ClientHttp2Session | undefined;
  let failure: Error | undefined;
  // what is waiting on the connection: the connect, then the calls in flight
  const waiting = new Set<(err: Error) => void>();
  const destroy = (err: Error) => {
    failure ??= err;
    stopAbort();
    session?.destroy();
    sock.destroy();
    for (const fail of [...waiting]) fail(failure);
  };
  const stopAbort = onAbort(signal, () => destroy(abortError(signal!, where, hungHint)));

  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      waiting.delete(done);
      if (err) reject(err);
      else resolve();
    };
    waiting.add(done);
    const timer = setTimeout(() => destroy(new CrashcartError(`${where} did not accept a connection within ${seconds(timeoutMs)}`, { hint, code: 'ETIMEDOUT' })), timeoutMs);
    sock.once('connect', () => done());
    sock.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'no such socket'
        : err.code === 'ECONNREFUSED' ? 'connection refused (no daemon listening)'
          : err.code === 'EACCES' ? 'permission denied' : err.message;
      destroy(new CrashcartError(`cannot reach ${where}: ${why}`, { hint, cause: err }));
    });
  });
  session = connect('http://localhost', { createConnection: () => sock });
  session.on('error', (err: Error) => destroy(new CrashcartError(`the connection to ${where} failed: ${err.message}`, { hint, cause: err })));

  const call = (path: string, request: Buffer, headers: Record<string, string> = {}) => new Promise<Buffer>((resolve, reject) => {
    if (failure) return reject(failure);
    const method = path.split('/').pop();
    let settled = false;
    const done = (err: Error | undefined, value?: Buffer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      waiting.delete(fail);
      if (err) {
        req.close();
        reject(err);
      } else resolve(value!);
    };
    const fail = (err: Error) => done(err);
    waiting.add(fail);
    const timer = setTimeout(() => destroy(new CrashcartError(`${where} did not answer ${method} within ${seconds(timeoutMs)}`, {
      hint: hungHint, code: 'ETIMEDOUT',
    })), timeoutMs);
    const frame = Buffer.alloc(5);
    frame.writeUInt32BE(request.length, 1);
    const req = session!.request({
      ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers,
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let message = '';
    const noteStatus = (h: Record<string, unknown>) => {
      if (h['grpc-status'] !== undefined) {
        status = String(h['grpc-status']);
        message = String(h['grpc-message'] ?? '');
        try {
          message = decodeURIComponent(message);
        } catch { /* not percent-encoded after all */ }
      }
    };
    req.on('response', (h) => noteStatus(h));
    req.on('trailers', (h) => noteStatus(h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', (err: Error) => done(failure ?? new CrashcartError(`${method} on ${where} failed: ${err.message}`, { hint, cause: err })));
    // after 'end' this is a no-op; without it, a stream reset by the daemon
    req.on('close', () => done(failure ?? new CrashcartError(`${where} closed the call ${method} without an answer`, { hint })));
    req.on('end', () => {
      if (status !== undefined && status !== '0') {
        const code = Number(status);
        return done(new CrashcartError(`${where} refused ${method}: ${message || STATUS[code] || `gRPC status ${code}`}`, {
          hint: `check that ${what} is healthy`,
        }));
      }
      const body = Buffer.concat(chunks);
      if (body.length < 5 || body[0] !== 0 || body.length < 5 + body.readUInt32BE(1)) {
        return done(new CrashcartError(`${where} sent a malformed answer to ${method}`, { hint: `is ${socket} containerd's gRPC socket?` }));
      }
      done(undefined, body.subarray(5, 5 + body.readUInt32BE(1)));
    });
    req.end(Buffer.concat([frame, request]));
  });

  return { call, close: () => destroy(new CrashcartError(`the connection to ${where} was closed`)) };
}
