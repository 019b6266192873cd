// A deadline for a probe that may talk to a hung daemon. Racing a timer is not enough: the
// probe's sockets (an HTTP request, an HTTP/2 session) and child processes would keep the
// event loop, and so crashcart, alive after it. Everything the probe opens is recorded
// through Node's diagnostics channels, in the probe's own async context, and destroyed
// when the deadline passes.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ChildProcess } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';

interface Opened {
  sockets: Socket[];
  children: ChildProcess[];
}

const current = new AsyncLocalStorage<Opened>();
let active = 0;

const onSocket = (m: unknown) => {
  const socket = (m as { socket?: Socket }).socket;
  if (socket) current.getStore()?.sockets.push(socket);
};
const onChild = (m: unknown) => {
  const child = (m as { process?: ChildProcess }).process;
  if (child) current.getStore()?.children.push(child);
};

export type Outcome<T> =
  | { state: 'done'; value: T; ms: number }
  | { state: 'failed'; error: unknown; ms: number }
  | { state: 'timeout'; ms: number };

/** Runs `probe`; after `ms` gives up on it and destroys the sockets and processes it opened. */
export async function withDeadline<T>(probe: () => Promise<T>, ms: number): Promise<Outcome<T>> {
  if (active++ === 0) {
    subscribe('net.client.socket', onSocket);
    subscribe('child_process', onChild);
  }
  const opened: Opened = { sockets: [], children: [] };
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = current.run(opened, probe).then(
      (value): Outcome<T> => ({ state: 'done', value, ms: performance.now() - t0 }),
      (error: unknown): Outcome<T> => ({ state: 'failed', error, ms: performance.now() - t0 }),
    );
    const late = new Promise<Outcome<T>>((resolve) => {
      timer = setTimeout(() => resolve({ state: 'timeout', ms: performance.now() - t0 }), ms);
    });
    const outcome = await Promise.race([work, late]);
    if (outcome.state === 'timeout') {
      for (const s of opened.sockets) s.destroy();
      // our own children only, by their handle
      for (const c of opened.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    return outcome;
  } finally {
    clearTimeout(timer);
    if (--active === 0) {
      unsubscribe('net.client.socket', onSocket);
      unsubscribe('child_process', onChild);
    }
  }
}
