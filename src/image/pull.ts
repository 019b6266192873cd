// Downloads a toolkit image into the cache under its digest. The download goes to a private
// temporary file in the cache's images/ directory and is renamed into place only after its
// length, sha256 and ext3 superblock have been checked; every failure (and SIGINT/SIGTERM)
// removes the temporary file, so a partial image is never kept.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { ensureCacheDir } from './cache-dir.js';
import { CrashcartError } from '../core/errors.js';
import { imageError } from './errors.js';
import { checkExt3 } from './ext3.js';
import { sweepDeadTemps } from './temp.js';
import { interruptible } from '../core/signals.js';
import { imagesDir, type PullSidecar } from './store.js';

const MAX_REDIRECTS = 5;
/** A download that sends nothing for this long fails. */
const IDLE_TIMEOUT_MS = 30_000;

export interface PullOptions {
  url: string;
  /** Expected sha256 (64 hex digits, `sha256:` allowed); required unless `insecure`. */
  sha256?: string;
  insecure?: boolean;
  /** Called as bytes arrive: received so far, and the total when the server said it. */
  onProgress?: (received: number, total: number | undefined) => void;
}

export interface PullResult {
  path: string;
  sha256: string;
  sizeBytes: number;
}

/** A 64-hex-digit digest from --sha256 (lowercased), or undefined when it is not one. */
export function parseDigest(text: string): string | undefined {
  const hex = text.trim().toLowerCase().replace(/^sha256[:-]/, '');
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

class PullFailure extends Error {}

interface Download {
  received: number;
  total?: number;
  sha256: string;
}

/** GETs `url` into `file`, following redirects; rejects with PullFailure on anything wrong. */
function download(url: string, file: string, opts: PullOptions, signal: AbortSignal): Promise<Download> {
  return new Promise<Download>((resolvePromise, rejectPromise) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      rejectPromise(new PullFailure(why));
    };
    const get = (target: URL, redirects: number) => {
      const mod = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : undefined;
      if (!mod) return fail(`unsupported URL scheme ${target.protocol} (use http or https)`);
      const req = mod.get(target, { signal, headers: { 'user-agent': 'crashcart', 'accept-encoding': 'identity' } }, (res) => {
        const status = res.statusCode ?? 0;
        if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
          res.resume();
          if (redirects >= MAX_REDIRECTS) return fail(`too many redirects (more than ${MAX_REDIRECTS})`);
          let next: URL;
          try {
            next = new URL(res.headers.location, target);
          } catch {
            return fail(`bad redirect location '${res.headers.location}'`);
          }
          return get(next, redirects + 1);
        }
        if (status !== 200) {
          res.resume();
          return fail(`HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`);
        }
        const lengthHeader = res.headers['content-length'];
        const total = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
        const hash = createHash('sha256');
        const out = createWriteStream(file, { flags: 'r+' });
        let received = 0;
        let ended = false;
        out.on('error', (err) => {
          res.destroy();
          fail(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
        });
        res.on('data', (chunk: Buffer) => {
          received += chunk.length;
          hash.update(chunk);
          opts.onProgress?.(received, total);
          if (!out.write(chunk)) {
            res.pause();
            out.once('drain', () => res.resume());
          }
        });
        res.on('end', () => {
          ended = true;
          out.end();
        });
        // 'aborted'/'error' of the response: the peer went away mid-body
        const cut = () => {
          if (ended && res.complete) return;
          out.destroy();
          fail(total !== undefined ? `truncated download (got ${received} of ${total} bytes)` : `connection closed before the end of the download (got ${received} bytes)`);
        };
        res.on('aborted', cut);
        res.on('error', cut);
        res.on('close', () => {
          if (!res.complete) cut();
        });
        out.on('finish', () => {
          if (settled) return;
          if (!res.complete) return cut();
          if (total !== undefined && received !== total) return fail(`truncated download (got ${received} of ${total} bytes)`);
          settled = true;
          resolvePromise({ received, total, sha256: hash.digest('hex') });
        });
      });
      req.setTimeout(IDLE_TIMEOUT_MS, () => {
        req.destroy();
        fail(`no data for ${IDLE_TIMEOUT_MS / 1000} s`);
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (signal.aborted) return fail(String(signal.reason));
        // (an AggregateError of several addresses has an empty message)
        fail(err.message || String(err.code ?? err));
      });
    };
    let first: URL;
    try {
      first = new URL(url);
    } catch {
      return fail('not a valid URL');
    }
    get(first, 0);
  });
}

/**
 * Pulls `opts.url` into `${cacheDir()}/images/sha256-<hex>.img` with a sidecar
 * `{sha256, source, pulled, sizeBytes}`. Errors are one line starting "pull URL: ".
 */
export async function pullImage(opts: PullOptions): Promise<PullResult> {
  const { url } = opts;
  const failed = (why: string, cause?: unknown, hint = 'nothing was kept') => imageError('EPULL', `pull ${url}: ${why}`, { hint, cause });
  let expected: string | undefined;
  if (opts.sha256 !== undefined) {
    expected = parseDigest(opts.sha256);
    if (!expected) throw failed(`--sha256 '${opts.sha256}' is not a sha256 digest (64 hex digits)`, undefined, 'give the digest the image was published with');
  } else if (!opts.insecure) {
    throw failed('no --sha256 given', undefined, 'pass the published digest with --sha256 HEX (or --insecure to skip the check)');
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw failed('not a valid URL', undefined, 'give an http:// or https:// URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw failed(`unsupported URL scheme ${parsed.protocol.replace(/:$/, '')}`, undefined, 'give an http:// or https:// URL');

  await ensureCacheDir();
  const dir = await ensureCacheDir(imagesDir());
  await sweepDeadTemps(dir, /^\.pull-(\d+)-[0-9a-f]+\.tmp(?:\.json)?$/);
  // A dot name: `image ls` and --image never see it.
  const tmp = join(dir, `.pull-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  return interruptible(async (interrupted) => {
    try {
      await writeFile(tmp, '', { flag: 'wx', mode: 0o600 });
      let got: Download;
      try {
        got = await download(url, tmp, opts, interrupted);
      } catch (err) {
        throw err instanceof PullFailure ? failed(err.message) : failed((err as Error).message, err);
      }
      if (interrupted.aborted) throw failed(String(interrupted.reason));
      if (expected && got.sha256 !== expected) throw failed(`sha256 mismatch (expected ${expected}, got ${got.sha256})`);
      try {
        await checkExt3(tmp);
      } catch (err) {
        const msg = (err as Error).message.replace(`image ${tmp} `, '');
        throw failed(msg.replace(/^is /, ''), err);
      }
      const path = join(dir, `sha256-${got.sha256}.img`);
      const sidecar: PullSidecar = { sha256: got.sha256, source: url, pulled: new Date().toISOString(), sizeBytes: got.received };
      const sideTmp = `${tmp}.json`;
      try {
        await writeFile(sideTmp, `${JSON.stringify(sidecar, null, 2)}\n`, { mode: 0o644 });
        await chmod(tmp, 0o644);
        await rename(tmp, path);
        await rename(sideTmp, `${path}.json`);
      } finally {
        await rm(sideTmp, { force: true });
      }
      return { path, sha256: got.sha256, sizeBytes: got.received };
    } catch (err) {
      // the cache's file system refused (ENOSPC, EACCES, ...): still one line
      if (!(err instanceof CrashcartError) && typeof (err as NodeJS.ErrnoException).code === 'string') {
        throw failed((err as Error).message, err, 'check the free space and the permissions of the cache; nothing was kept');
      }
      throw err;
    } finally {
      await rm(tmp, { force: true });
    }
  });
}

/** A progress line for a terminal, redrawn in place at most ten times a second. */
export function progressLine(label: string, stream: NodeJS.WriteStream = process.stderr) {
  let last = 0;
  let drawn = false;
  const mib = (n: number) => (n / 1048576).toFixed(1);
  return {
    update(received: number, total: number | undefined) {
      const now = Date.now();
      if (now - last < 100 && received !== total) return;
      last = now;
      drawn = true;
      const text = total ? `${mib(received)} of ${mib(total)} MiB (${Math.floor((received / total) * 100)}%)` : `${mib(received)} MiB`;
      stream.write(`\r\x1b[Kcrashcart: pulling ${label}: ${text}`);
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}
