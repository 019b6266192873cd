// A real terminal for the tests: a session on a tmux server of this process's own; send-keys
// types, capture-pane reads the screen. A wait must only be met by what the step it belongs
// to produced, so a step starts on a cleared screen: what a previous step left there (a
// prompt, an exit line) cannot answer for it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { waitFor } from './wait.js';

/** the server's socket, in a directory of this process's own (tmux leaves the file behind when
 *  the server ends, and with -L its own /tmp/tmux-UID directory too) */
const socketDir = join(tmpdir(), `crashcart-tmux-${process.pid}`);
const socketPath = join(socketDir, 'server');
const tmux = (...args: string[]) => execa('tmux', ['-S', socketPath, ...args], { stdin: 'ignore' });

let started = false;

export interface Terminal {
  /** tmux key names ('Enter', 'C-c', 'Escape'); other words are typed as they are */
  send(...keys: string[]): Promise<void>;
  /** what the screen shows now */
  screen(): Promise<string>;
  /** the PID of the session's first program (its shell) */
  pid(): Promise<number>;
  /**
   * Empties the screen and its history: tmux resets the pane's terminal at once (the
   * program in it is not told). Waits until `next`, if given, is not on the screen.
   */
  clear(next?: RegExp): Promise<void>;
  /** Waits until the screen matches `pattern`; returns the screen. */
  waitFor(pattern: RegExp, what?: string, ms?: number): Promise<string>;
  /**
   * One step: clears the screen, types each of `inputs` in turn and waits for `pattern`,
   * which only what the step brought about can then match.
   */
  step(pattern: RegExp, ...inputs: string[][]): Promise<string>;
  /** ends the session and what runs in it (SIGHUP) */
  kill(): Promise<void>;
}

/** Starts a session running `command` (default /bin/sh) on a width x height terminal; the pane stays when it exits. */
export async function startTerminal(name: string, opts: { width?: number; height?: number; command?: string } = {}): Promise<Terminal> {
  if (!started) {
    started = true;
    // a test process that ends early takes its terminals with it
    process.once('exit', () => {
      spawnSync('tmux', ['-S', socketPath, 'kill-server'], { stdio: 'ignore' });
      rmSync(socketDir, { recursive: true, force: true });
    });
  }
  mkdirSync(socketDir, { recursive: true, mode: 0o700 });
  await tmux('new-session', '-d', '-s', name, '-x', String(opts.width ?? 100), '-y', String(opts.height ?? 30), opts.command ?? '/bin/sh');
  await tmux('set', '-t', name, 'remain-on-exit', 'on');
  const screen = async () => (await tmux('capture-pane', '-p', '-t', name)).stdout;
  const term: Terminal = {
    async send(...keys) {
      await tmux('send-keys', '-t', name, ...keys);
    },
    screen,
    async pid() {
      return Number((await tmux('display-message', '-p', '-t', name, '#{pane_pid}')).stdout.trim());
    },
    async clear(next) {
      // one tmux call: the screen read back is the one right after the reset
      const cleared = (await tmux('send-keys', '-R', '-t', name, ';', 'clear-history', '-t', name, ';', 'capture-pane', '-p', '-t', name)).stdout;
      if (next && next.test(cleared)) {
        await waitFor(`the cleared screen no longer shows ${next}`, async () => !next.test(await screen()), { every: 50 });
      }
    },
    async waitFor(pattern, what, ms = 10_000) {
      let last = '';
      try {
        return await waitFor(what ?? `the screen matches ${pattern}`, async () => {
          last = await screen();
          return pattern.test(last) && last;
        }, { ms, every: 50 });
      } catch (err) {
        throw new Error(`${what ? `${what}: ` : ''}the screen never matched ${pattern} in ${ms} ms:\n${last}`, { cause: err });
      }
    },
    async step(pattern, ...inputs) {
      await term.clear(pattern);
      for (const keys of inputs) await term.send(...keys);
      return term.waitFor(pattern);
    },
    async kill() {
      await tmux('kill-session', '-t', name).catch(() => {});
    },
  };
  return term;
}

/** Ends every terminal of this process (its tmux server). */
export async function stopTerminals(): Promise<void> {
  if (!started) return;
  await tmux('kill-server').catch(() => {});
  rmSync(socketDir, { recursive: true, force: true });
}
