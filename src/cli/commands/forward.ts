// crashcart forward <target> [LOCAL:]REMOTE... [--address ADDR]: ports of the host that lead
// into the target's network namespace (see src/core/forward.ts).
import { closeSync, openSync } from 'node:fs';
import { isIP } from 'node:net';
import { writeAudit, type AuditEntry } from '../../core/audit.js';
import { CrashcartError, errnoCode } from '../../core/errors.js';
import { Forwarder, hostPort, parseForwardSpec, remoteText, resolveInTarget, type Forward } from '../../core/forward.js';
import { describeTarget } from '../../core/grafts.js';
import { startTime } from '../../core/proc.js';
import { inspectTarget } from '../../core/target.js';
import { resolveTarget } from '../../runtimes/index.js';
import { logger, requireRoot, warn } from '../output.js';
import type { ForwardArgs } from './reach-options.js';

/** The listen addresses: IP addresses, 'localhost' as 127.0.0.1, each once. */
export function listenAddresses(words: string[]): string[] {
  const out: string[] = [];
  for (const word of words.flatMap((w) => w.split(','))) {
    const a = word.trim() === 'localhost' ? '127.0.0.1' : word.trim();
    if (isIP(a) === 0) throw new CrashcartError(`invalid --address '${word}': not an IP address`, { hint: 'give 127.0.0.1, ::1, 0.0.0.0, localhost or another address of this host' });
    if (!out.includes(a)) out.push(a);
  }
  return out;
}

function openProc(pid: number, rel: string): number {
  try {
    return openSync(`/proc/${pid}/${rel}`, 'r');
  } catch (e) {
    throw new CrashcartError(`cannot open /proc/${pid}/${rel}: ${errnoCode(e) ?? String(e)}`, { hint: 'is the target still running?', cause: e });
  }
}

export async function forward(args: ForwardArgs): Promise<number> {
  requireRoot('crashcart forward', "it enters the container's network namespace");
  const log = logger(args.verbose);
  if (args.ports.length === 0) throw new CrashcartError('crashcart forward needs at least one port', { hint: 'e.g. crashcart forward web 8080' });
  const specs = args.ports.map(parseForwardSpec);
  const addresses = listenAddresses(args.address);
  const target = await resolveTarget(args.target, args.runtime, args.namespace === undefined ? {} : { namespace: args.namespace }, { warn });
  const what = describeTarget(target);
  const facts = inspectTarget(target.pid, { allowHost: true, what });
  const name = target.name ?? target.id;
  const netNsFd = openProc(target.pid, 'ns/net');
  let rootFd = -1;
  try {
    rootFd = openProc(target.pid, 'root');
    if (startTime(target.pid) !== facts.start) throw new CrashcartError(`${what} exited while crashcart was opening it`, { hint: 'is the container restarting?' });
    const forwards: Forward[] = specs.map((spec) => ({
      spec,
      ...(spec.remote.kind === 'tcp' ? { resolved: resolveInTarget(rootFd, spec.remote.host, what) } : {}),
    }));
    return await run(args, { target, what, name, netNsFd, rootFd, addresses, forwards, log });
  } finally {
    closeSync(netNsFd);
    if (rootFd >= 0) closeSync(rootFd);
  }
}

async function run(
  args: ForwardArgs,
  c: { target: Awaited<ReturnType<typeof resolveTarget>>; what: string; name: string; netNsFd: number; rootFd: number; addresses: string[]; forwards: Forward[]; log: (l: string) => void },
): Promise<number> {
  const started = Date.now();
  const fwd = new Forwarder({ netNsFd: c.netNsFd, rootFd: c.rootFd, targetPid: c.target.pid, name: c.name, addresses: c.addresses, forwards: c.forwards, warn, log: c.log });
  const listening = await fwd.start();
  const lines = listening.map((l) => {
    const r = l.forward.spec.remote;
    const via = r.kind === 'tcp' && r.host !== undefined && r.host !== l.forward.resolved!.address ? ` (${l.forward.resolved!.address})` : '';
    return `${hostPort(l.address, l.port)} -> ${c.name}:${remoteText(r)}${via}`;
  });
  const stop = () => fwd.stop();
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, stop);
  const auditTarget = { runtime: c.target.runtime, id: c.target.id, ...(c.target.name ? { name: c.target.name } : {}), pid: c.target.pid };
  const audited = (entry: AuditEntry) => {
    const why = writeAudit(args.audit ? entry : { event: entry.event, noAudit: true });
    if (why) warn(why);
  };
  audited({ event: 'forward', state: 'started', target: auditTarget, forwards: lines });
  for (const line of lines) process.stdout.write(`forwarding ${line}\n`);
  const ended = await fwd.ended;
  for (const s of signals) process.removeListener(s, stop);
  const exitCode = ended.why === 'stopped' ? 0 : 125;
  audited({ event: 'forward', state: 'ended', target: auditTarget, forwards: lines, connections: fwd.connections, exitCode, durationMs: Date.now() - started });
  if (ended.why === 'target-gone') {
    throw new CrashcartError(`${c.what} stopped (pid ${c.target.pid} exited): forwarding ended after ${fwd.connections} connection(s)`);
  }
  if (ended.why === 'helper-died') {
    const how = ended.status.signal !== null ? `was killed by signal ${ended.status.signal}` : `exited with status ${ended.status.code}`;
    throw new CrashcartError(`the network helper (pid ${fwd.helperPid}) ${how}: forwarding ended`, { hint: 'run crashcart forward again' });
  }
  return 0;
}
