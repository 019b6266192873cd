// A daemon that hangs, as crashcart sees it from outside: a unix socket that accepts every
// connection and never writes a byte. It reads (and drops) what comes, so it sees when a
// client closes its end, and counts.
import { createServer, type Server, type Socket } from 'node:net';

export class HungSocket {
  /** connections accepted and not closed yet */
  readonly open = new Set<Socket>();
  accepted = 0;
  closed = 0;
  private server?: Server;
  private waiters: (() => void)[] = [];

  constructor(readonly path: string) {}

  async start(): Promise<void> {
    this.server = createServer((s) => {
      this.accepted++;
      this.open.add(s);
      s.resume();
      s.on('error', () => {});
      s.on('close', () => {
        this.closed++;
        this.open.delete(s);
        this.notify();
      });
      this.notify();
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.path, resolve);
    });
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once `cond` holds (checked now and after every accept and close); rejects after `ms`. */
  async until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting until ${what} (accepted ${this.accepted}, closed ${this.closed})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves once every connection accepted so far has been closed by its client. */
  allClosed(ms?: number): Promise<void> {
    return this.until('every connection is closed', () => this.open.size === 0, ms);
  }

  /** Closes what is still open and the socket itself (its file goes with it). */
  async stop(): Promise<void> {
    for (const s of this.open) s.destroy();
    if (this.server) await new Promise((resolve) => this.server!.close(resolve));
  }
}
