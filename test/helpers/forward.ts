// What the forward tests share: the echo server (test/fixtures/echo.c) compiled once, a
// running `crashcart forward` with the ports it printed, and connections whose every byte is
// checked.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { startCrashcart } from './cli.js';
import { projectRoot } from './host.js';
import { processes } from './procs.js';
import { waitFor } from './wait.js';

let echo: Promise<string> | undefined;

/** test/fixtures/echo.c, static, once per test process. */
export function echoPath(): Promise<string> {
  echo ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crashcart-echo-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'echo');
    await execa('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-o', out, join(projectRoot(), 'test/fixtures/echo.c')], { stdin: 'ignore' });
    return out;
  })();
  return echo;
}

export const ECHO_PORT = 8080;

/** The echo server's args as PID 1: 127.0.0.1:8080, /tmp/echo.sock and @echo-abstract. */
export const ECHO_ARGS = ['/bin/echo', String(ECHO_PORT), '/tmp/echo.sock', 'echo-abstract'];

/** Until the echo server (pid) listens on 127.0.0.1:8080 in its own network namespace. */
export async function waitEchoListening(pid: number): Promise<void> {
  const { readFile } = await import('node:fs/promises');
  const want = `0100007F:${ECHO_PORT.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A`;
  await waitFor(`echo (pid ${pid}) listens on 127.0.0.1:${ECHO_PORT}`, async () => (await readFile(`/proc/${pid}/net/tcp`, 'utf8').catch(() => '')).includes(want));
}

export interface Forwarding {
  child: ReturnType<typeof startCrashcart>;
  pid: number;
  /** the start lines, in order */
  lines: string[];
  /** the local port of each line */
  ports: number[];
  /** stderr so far */
  stderr(): string;
}

/** Starts `crashcart forward ARGS` and waits for its `count` start lines. */
export async function startForward(args: string[], count: number, env?: Record<string, string>): Promise<Forwarding> {
  const child = startCrashcart(['forward', ...args], { timeout: 300_000, ...(env ? { env } : {}) });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let exited = false;
  void child.then(() => (exited = true));
  await waitFor(`crashcart forward prints ${count} start line(s)`, () => {
    if (exited) throw new Error(`crashcart forward exited before it was ready:\n${err}`);
    return out.split('\n').filter(Boolean).length >= count;
  }, { ms: 30_000 });
  const lines = out.split('\n').filter(Boolean);
  const ports = lines.map((l) => {
    const m = /^forwarding (?:\[[^\]]+\]|[\d.]+):(\d+) -> /.exec(l);
    assert.ok(m, `a start line: ${l}`);
    return Number(m[1]);
  });
  return { child, pid: child.pid!, lines, ports, stderr: () => err };
}

export interface RoundTrip {
  sent: number;
  received: number;
  /** the bytes came back exactly */
  same: boolean;
  /** the far side ended (FIN) rather than resetting */
  ended: boolean;
}

/**
 * Sends `size` random bytes and ends its side at once (a half-close): the echo server sends
 * everything back after the FIN reached it, then ends its own side.
 */
export function roundTrip(port: number, size: number, host = '127.0.0.1'): Promise<RoundTrip> {
  const data = randomBytes(size);
  const want = createHash('sha256').update(data).digest('hex');
  return new Promise((resolve, reject) => {
    const s: Socket = connect({ port, host, allowHalfOpen: true });
    const h = createHash('sha256');
    let received = 0;
    let ended = false;
    s.on('data', (d: Buffer) => {
      h.update(d);
      received += d.length;
    });
    s.on('end', () => {
      ended = true;
      s.end();
    });
    s.on('error', reject);
    s.on('close', (hadError) => {
      if (hadError) return;
      resolve({ sent: size, received, same: h.digest('hex') === want, ended });
    });
    s.end(data);
  });
}

/** A connection the far side closes at once: how it ended ('end', or the error's code). */
export function closedAtOnce(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.on('data', () => resolve('data'));
    s.on('end', () => resolve('end'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

export const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** crashcart's network helper (a child named crashcart-net), if it runs. */
export const helperOf = (pid: number) => processes().find((p) => p.ppid === pid && p.comm === 'crashcart-net');
