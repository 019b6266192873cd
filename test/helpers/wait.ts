// Waiting in tests: a condition the test can observe, checked at a short interval until it
// holds or a deadline passes. Never a fixed sleep that hopes something has happened.
import { setTimeout as delay } from 'node:timers/promises';

export interface WaitOptions {
  /** the deadline in milliseconds (default 10 s) */
  ms?: number;
  /** milliseconds between two checks (default 20) */
  every?: number;
}

type Falsy = undefined | null | false | 0 | '';

/**
 * Checks `cond` until it gives a truthy value, which is returned; throws "timed out after
 * N ms waiting until WHAT" at the deadline. An error thrown by `cond` ends the wait with it.
 */
export async function waitFor<T>(what: string, cond: () => T | Falsy | Promise<T | Falsy>, opts: WaitOptions = {}): Promise<T> {
  const ms = opts.ms ?? 10_000;
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await delay(opts.every ?? 20);
  }
}

/** Like waitFor, but says whether `cond` came true instead of throwing at the deadline. */
export async function until(cond: () => unknown, opts: WaitOptions = {}): Promise<boolean> {
  const deadline = Date.now() + (opts.ms ?? 10_000);
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > deadline) return false;
    await delay(opts.every ?? 20);
  }
}
