// crashcart forward: listen on the host, open each connection inside a target's network
// namespace, relay the bytes. The connections are opened by one helper process that lives
// in that namespace (native/net.cc: no fork per connection); Node relays both directions
// with backpressure (pipe) and half-close (a FIN on one side becomes shutdown(SHUT_WR) on
// the other: allowHalfOpen everywhere).
import { isIPv4, isIPv6, Server, Socket, createServer } from 'node:net';
import { getSystemErrorMap } from 'node:util';
import { closeSync } from 'node:fs';
import { CrashcartError, errnoCode } from './errors.js';
import { readInRoot } from './inroot.js';
import { NET_EXIT_STOPPED, NET_EXIT_TARGET_GONE, netConnect, netHelper, netStop, type NetConnectRequest, type NetHelperExit } from '../native/index.js';

/** Where a connection goes inside the target. */
export type Remote =
  | { kind: 'tcp'; host?: string; port: number }
  | { kind: 'unix'; path: string }
  | { kind: 'abstract'; name: string };

export interface ForwardSpec {
  /** the host port; 0 picks a free one */
  local: number;
  remote: Remote;
}

const usage = 'give [LOCAL:]PORT, LOCAL:HOST:PORT, LOCAL:/path/of/unix.sock or LOCAL:@abstract-name';

function port(word: string, what: string, spec: string, min: number): number {
  if (!/^[0-9]{1,5}$/.test(word) || Number(word) < min || Number(word) > 65535) {
    throw new CrashcartError(`invalid forward '${spec}': ${what} '${word}' is not a port (${min}-65535)`, { hint: usage });
  }
  return Number(word);
}

/**
 * kubectl port-forward's syntax, plus a host or a unix socket inside:
 *   8080            host 8080 -> 127.0.0.1:8080 inside
 *   18080:8080      host 18080 -> 127.0.0.1:8080
 *   :8080, 0:8080   a free host port -> 127.0.0.1:8080
 *   15432:db:5432   host 15432 -> db:5432 as the container resolves db ([v6]:PORT too)
 *   5432:/run/postgresql/.s.PGSQL.5432   host 5432 -> that unix socket in the container
 *   9000:@name      host 9000 -> the abstract unix socket @name in its network namespace
 */
export function parseForwardSpec(spec: string): ForwardSpec {
  const colon = spec.indexOf(':');
  if (colon >= 0) {
    const rest = spec.slice(colon + 1);
    const local = colon === 0 ? 0 : port(spec.slice(0, colon), 'local port', spec, 0);
    if (rest.startsWith('/')) return { local, remote: { kind: 'unix', path: rest } };
    if (rest.startsWith('@')) {
      if (rest.length === 1) throw new CrashcartError(`invalid forward '${spec}': the abstract socket has no name`, { hint: usage });
      return { local, remote: { kind: 'abstract', name: rest.slice(1) } };
    }
    const v6 = /^\[([^\]]+)\]:([^:]*)$/.exec(rest);
    if (v6) {
      if (!isIPv6(v6[1]!)) throw new CrashcartError(`invalid forward '${spec}': '${v6[1]}' is not an IPv6 address`, { hint: usage });
      return { local, remote: { kind: 'tcp', host: v6[1]!, port: port(v6[2]!, 'port', spec, 1) } };
    }
    const parts = rest.split(':');
    if (parts.length === 1) return { local, remote: { kind: 'tcp', port: port(parts[0]!, 'port', spec, 1) } };
    if (parts.length === 2 && parts[0] !== '') return { local, remote: { kind: 'tcp', host: parts[0]!, port: port(parts[1]!, 'port', spec, 1) } };
    throw new CrashcartError(`invalid forward '${spec}'`, { hint: usage });
  }
  if (spec.startsWith('/') || spec.startsWith('@')) {
    throw new CrashcartError(`invalid forward '${spec}': a unix socket needs a local port`, { hint: `give LOCAL:${spec} (0 picks a free port)` });
  }
  const p = port(spec, 'port', spec, 1);
  return { local: p, remote: { kind: 'tcp', port: p } };
}

/** The remote as the start line shows it after the target's name: 8080, db:5432, /run/x.sock, @name. */
export function remoteText(r: Remote): string {
  if (r.kind === 'unix') return r.path;
  if (r.kind === 'abstract') return `@${r.name}`;
  if (r.host === undefined) return String(r.port);
  return `${isIPv6(r.host) ? `[${r.host}]` : r.host}:${r.port}`;
}

export const hostPort = (address: string, p: number) => `${isIPv6(address) ? `[${address}]` : address}:${p}`;

/** An address as connect() takes it. */
export interface Resolved {
  family: 4 | 6;
  address: string;
}

/** The addresses of `name` in a hosts file's text, in file order (IPv4 first). */
export function lookupHosts(text: string, name: string): Resolved[] {
  const want = name.toLowerCase();
  const found: Resolved[] = [];
  for (const line of text.split('\n')) {
    const [address, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (!address || !names.some((n) => n.toLowerCase() === want)) continue;
    const plain = address.replace(/%.*$/, '');
    if (isIPv4(plain)) found.push({ family: 4, address: plain });
    else if (isIPv6(plain)) found.push({ family: 6, address: plain });
  }
  return [...found.filter((r) => r.family === 4), ...found.filter((r) => r.family === 6)];
}

/**
 * HOST as the container resolves it without asking a DNS server: an address as it is, else
 * the container's /etc/hosts (read inside its root), else 'localhost' as 127.0.0.1. A name
 * found nowhere is refused: crashcart does not query DNS from inside the container.
 */
export function resolveInTarget(rootFd: number, host: string | undefined, what: string): Resolved {
  if (host === undefined) return { family: 4, address: '127.0.0.1' };
  if (isIPv4(host)) return { family: 4, address: host };
  if (isIPv6(host)) return { family: 6, address: host };
  const hosts = readInRoot(rootFd, '/etc/hosts');
  const found = hosts === undefined ? [] : lookupHosts(hosts, host);
  if (found.length > 0) return found[0]!;
  if (host.toLowerCase() === 'localhost') return { family: 4, address: '127.0.0.1' };
  throw new CrashcartError(`cannot resolve '${host}' in ${what}: ${hosts === undefined ? 'it has no /etc/hosts' : "it is not in the container's /etc/hosts"}`, {
    hint: 'crashcart does not query DNS from inside the container; give its IP address',
  });
}

/** Packs an address for the native request. */
export function addressBytes(r: Resolved): Buffer {
  if (r.family === 4) return Buffer.from(r.address.split('.').map(Number));
  // expand '::' and any embedded IPv4 tail, then 8 groups of 16 bits
  let text = r.address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** 'ECONNREFUSED (connection refused)' for an errno number. */
export function errnoText(errno: number): string {
  const [name, message] = getSystemErrorMap().get(-errno) ?? [`E${errno}`, `error ${errno}`];
  return `${name} (${message})`;
}

export interface Forward {
  spec: ForwardSpec;
  /** tcp: the resolved address inside */
  resolved?: Resolved;
}

export interface Listening {
  address: string;
  port: number;
  forward: Forward;
}

export interface ForwarderOptions {
  netNsFd: number;
  rootFd: number;
  targetPid: number;
  /** the target as the lines name it ('web') */
  name: string;
  /** host addresses to listen on */
  addresses: string[];
  forwards: Forward[];
  warn: (line: string) => void;
  log: (line: string) => void;
  /** in-flight connects at once (the helper's table) */
  capacity?: number;
  connectTimeoutMs?: number;
}

/** How forwarding ended. */
export type Ended = { why: 'stopped' } | { why: 'target-gone' } | { why: 'helper-died'; status: NetHelperExit };

const CAPACITY = 1024;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Runs forwarding until stop() or until the target or the helper ends. Listeners are up
 * when start() resolves; `ended` resolves once the helper has been reaped and every
 * connection is closed.
 */
export class Forwarder {
  private helper?: { pid: number; control: number };
  private readonly servers: Server[] = [];
  private readonly open = new Set<Socket>();
  private readonly waiting = new Map<number, { client: Socket; forward: Forward; where: string }>();
  private readonly queue: Array<{ id: number; req: NetConnectRequest }> = [];
  private inFlight = 0;
  private nextId = 1;
  private stopping = false;
  /** reaped: its control fd is closed, and its number may be someone else's by now */
  private helperGone = false;
  private endReason: Ended | undefined;
  private resolveEnded!: (e: Ended) => void;
  readonly ended: Promise<Ended> = new Promise((resolve) => (this.resolveEnded = resolve));
  /** connections opened inside the target so far */
  connections = 0;

  constructor(private readonly o: ForwarderOptions) {}

  get helperPid(): number | undefined {
    return this.helper?.pid;
  }

  async start(): Promise<Listening[]> {
    this.helper = netHelper({
      netNsFd: this.o.netNsFd,
      rootFd: this.o.rootFd,
      targetPid: this.o.targetPid,
      capacity: this.o.capacity ?? CAPACITY,
      connectTimeoutMs: this.o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      onConnect: (id, fd, errno) => this.connected(id, fd, errno),
      onExit: (status) => this.helperExited(status),
    });
    this.o.log(`network helper: pid ${this.helper.pid}, in the network namespace of pid ${this.o.targetPid}`);
    const out: Listening[] = [];
    try {
      for (const forward of this.o.forwards) {
        // one port for every address: the first listener picks it when LOCAL is 0
        let local = forward.spec.local;
        for (const address of this.o.addresses) {
          const server = await this.listen(address, local, forward);
          local = (server.address() as { port: number }).port;
          out.push({ address, port: local, forward });
        }
      }
    } catch (e) {
      this.stop();
      await this.ended;
      throw e;
    }
    return out;
  }

  private listen(address: string, localPort: number, forward: Forward): Promise<Server> {
    return new Promise((resolve, reject) => {
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => this.accepted(client, forward));
      server.once('error', (e) => {
        const code = errnoCode(e);
        reject(new CrashcartError(`cannot listen on ${hostPort(address, localPort)}: ${code ?? (e as Error).message}${code === 'EADDRINUSE' ? ' (the port is in use)' : ''}`, {
          hint: code === 'EADDRINUSE' ? 'pick another local port, or 0 for a free one' : 'check --address and the local port',
          cause: e,
        }));
      });
      server.listen({ host: address, port: localPort, exclusive: true }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.o.warn(`listener ${hostPort(address, localPort)}: ${(e as Error).message}`));
        this.servers.push(server);
        resolve(server);
      });
    });
  }

  private accepted(client: Socket, forward: Forward): void {
    if (this.stopping) {
      client.destroy();
      return;
    }
    const where = `${client.remoteAddress}:${client.remotePort}`;
    client.on('error', () => {}); // a reset before the inside connection exists: nothing to relay
    this.open.add(client);
    client.once('close', () => this.open.delete(client));
    const id = this.nextId++;
    const r = forward.spec.remote;
    const req: NetConnectRequest =
      r.kind === 'tcp'
        ? { control: this.helper!.control, id, kind: 'tcp', family: forward.resolved!.family, address: addressBytes(forward.resolved!), port: r.port }
        : r.kind === 'unix'
          ? { control: this.helper!.control, id, kind: 'unix', path: r.path }
          : { control: this.helper!.control, id, kind: 'abstract', path: r.name };
    this.waiting.set(id, { client, forward, where });
    this.queue.push({ id, req });
    this.pump();
  }

  private pump(): void {
    const capacity = this.o.capacity ?? CAPACITY;
    while (this.queue.length > 0 && this.inFlight < capacity && !this.stopping && !this.helperGone) {
      const next = this.queue[0]!;
      let sent: boolean;
      try {
        sent = netConnect(next.req);
      } catch {
        return; // the helper is gone: its exit is reported and ends everything
      }
      if (!sent) {
        setImmediate(() => this.pump());
        return;
      }
      this.queue.shift();
      this.inFlight++;
    }
  }

  private connected(id: number, fd: number, errno: number): void {
    this.inFlight--;
    const w = this.waiting.get(id);
    this.waiting.delete(id);
    this.pump();
    if (!w || this.stopping || w.client.destroyed) {
      if (fd >= 0) closeSync(fd);
      return;
    }
    if (errno !== 0) {
      const r = w.forward.spec.remote;
      const inside = r.kind === 'tcp' ? hostPort(w.forward.resolved!.address, r.port) : remoteText(r);
      this.o.warn(`connection from ${w.where} closed: cannot connect to ${inside} in ${this.o.name}: ${errnoText(errno)}`);
      w.client.destroy();
      return;
    }
    this.connections++;
    const inner = new Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
    this.relay(w.client, inner);
  }

  private relay(client: Socket, inner: Socket): void {
    this.open.add(inner);
    inner.once('close', () => this.open.delete(inner));
    // A reset or error on one side ends both; an orderly end of one is passed on as a FIN
    // (pipe's end() is shutdown(SHUT_WR)), and each socket closes once both halves are done.
    const fail = () => {
      client.destroy();
      inner.destroy();
    };
    client.on('error', fail);
    inner.on('error', fail);
    client.once('close', () => inner.writableEnded || inner.destroy());
    inner.once('close', () => client.writableEnded || client.destroy());
    client.pipe(inner);
    inner.pipe(client);
  }

  /** Closes the listeners and every connection, and ends the helper. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    for (const s of this.servers) s.close();
    for (const s of this.open) s.destroy();
    for (const { client } of this.waiting.values()) client.destroy();
    if (this.helper && !this.helperGone) netStop(this.helper.control);
  }

  private helperExited(status: NetHelperExit): void {
    this.helperGone = true;
    const why: Ended = this.stopping && status.code === NET_EXIT_STOPPED
      ? { why: 'stopped' }
      : status.code === NET_EXIT_TARGET_GONE
        ? { why: 'target-gone' }
        : { why: 'helper-died', status };
    this.endReason ??= why;
    this.stop();
    this.resolveEnded(this.endReason);
  }
}
