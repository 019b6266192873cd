// crashcart's benchmark. Every case is measured side by side in one run (the machine is
// shared and noisy): each round runs every case once, in turn, and the table shows medians,
// min-max and ratios of medians from that run only. Sections:
//   attach   crashcart cold (no loop attached) and warm (another session holds the graft),
//            --exec, into a docker container; next to `node -e 0`, `nsenter -a`, `runc exec`,
//            and with a private dockerd `docker exec` and the sidecar technique
//            (`docker run --rm --pid container:X --network container:X` with a static busybox)
//   phases   where an attach spends its time (CRASHCART_TIMING=1)
//   rss      peak RSS of a session against `node -e 0` (getrusage of the child: /usr/bin/time)
//   fanout   one command in 1, 5, 10, 20 and 50 containers (`crashcart a,b,c -- true`)
//   hung     docker's and containerd's sockets accept and never answer
//   load     20 sessions at once, from 20 processes
//   images   toolkit image sizes and build times
//   forward  crashcart forward next to socat + nsenter per connection and to no relay at all
// It prints the table, and writes results.json and speed.svg (the comparison and the
// scaling curve, with the machine) into docs/ (or --out DIR).
//   npm run bench [-- --rounds N] [--only attach,phases,...] [--out DIR]
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../src/demo/scratch.js';
import { projectDir } from '../src/native/index.js';
import { StateStore } from '../src/core/state.js';
import { startDockerd, type PrivateDockerd } from '../test/helpers/dockerd.js';
import { importScratchRoot } from '../test/helpers/rootfs.js';
import { drawSvg, type Results, type Stat } from './bench-svg.js';
import { writeLauncher } from './launcher.js';

const SECTIONS = ['attach', 'phases', 'rss', 'fanout', 'hung', 'load', 'images', 'forward'] as const;
type Section = (typeof SECTIONS)[number];

function options() {
  const argv = process.argv.slice(2);
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const only = value('--only')?.split(',') ?? [...SECTIONS];
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`unknown section ${s}: choose from ${SECTIONS.join(', ')}`);
  return {
    rounds: Number(value('--rounds') ?? 15),
    only: new Set(only as Section[]),
    out: value('--out') ?? join(projectDir, 'docs'),
    fanout: (value('--fanout') ?? '1,5,10,20,50').split(',').map(Number),
  };
}

const opts = options();
const work = mkdtempSync(join(tmpdir(), 'crashcart-bench-'));
// the command as scripts/setup.sh installs it: bin/crashcart run by this Node, without /usr/bin/env
const cli = join(work, 'crashcart');
writeLauncher(join(projectDir, 'bin', 'crashcart'), cli);
const env: Record<string, string | undefined> = { ...process.env, CRASHCART_STATE_DIR: join(work, 'state'), CRASHCART_CACHE_DIR: join(work, 'cache'), CRASHCART_AUDIT_LOG: join(work, 'audit.log') };
delete env.CRASHCART_TIMING;
// Every case runs as `sudo crashcart` would: sudo's env_reset leaves NODE_EXTRA_CA_CERTS
// out, and with it Node reads that file's certificates at its start, needed or not (tens of
// ms here, the same for `node -e 0` and crashcart, which would flatter every ratio to it).
const extraCaCerts = env.NODE_EXTRA_CA_CERTS;
delete env.NODE_EXTRA_CA_CERTS;

/** Runs a command to its end (stdio ignored, stderr kept); rejects unless it exits 0. */
function run(cmd: string, args: string[], withEnv = env): Promise<{ ms: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env: withEnv, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve({ ms, stderr });
      else reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}
const timed = async (cmd: string, args: string[], withEnv = env) => (await run(cmd, args, withEnv)).ms;

export function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { median, min: s[0]!, max: s.at(-1)!, n: s.length };
}

/** Every case once per round, in turn; a warm-up round first. */
async function sideBySide(cases: Record<string, () => Promise<number>>, rounds: number): Promise<Record<string, Stat>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (const fn of Object.values(cases)) await fn();
  for (let i = 0; i < rounds; i++) {
    for (const [name, fn] of Object.entries(cases)) samples[name]!.push(await fn());
  }
  return Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, stat(xs)]));
}

const f1 = (n: number) => n.toFixed(1);
function printTable(title: string, rows: Record<string, Stat>, base: string, unit = 'ms'): void {
  console.log(title);
  const b = rows[base]!.median;
  const w = Math.max(...Object.keys(rows).map((k) => k.length));
  for (const [name, s] of Object.entries(rows)) {
    console.log(`  ${name.padEnd(w)}  ${f1(s.median).padStart(7)} ${unit}  (${f1(s.min)}-${f1(s.max)})  x${(s.median / b).toFixed(2)} ${base}`);
  }
}

/** A daemon that hangs: a unix socket that accepts every connection and never answers. */
async function hungSocket(path: string): Promise<{ path: string; close: () => Promise<void> }> {
  const open = new Set<Socket>();
  const server = createServer((s) => {
    open.add(s);
    s.resume();
    s.on('error', () => {});
    s.on('close', () => open.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A session that holds the graft in `id` until stop(): `sh -c 'read x'` with stdin a pipe. */
async function holdGraft(image: string, id: string): Promise<{ stop: () => Promise<void> }> {
  const child = spawn(cli, ['-i', image, id, '--', 'sh', '-c', 'read x'], { env, stdio: ['pipe', 'ignore', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const store = new StateStore(env.CRASHCART_STATE_DIR);
  const deadline = Date.now() + 30_000;
  while (!store.all().some((r) => r.sessions.some((s) => s.processes[0]?.pid === child.pid && s.processes.length === 2))) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the session holding the graft in ${id} did not start`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    stop: async () => {
      child.stdin!.end('\n');
      await exited;
    },
  };
}

/** Peak RSS in MiB of a command and its children that were waited for, from getrusage (GNU time). */
async function peakRss(cmd: string, args: string[]): Promise<number> {
  const { stderr } = await run('/usr/bin/time', ['-f', 'maxrss %M', cmd, ...args]);
  const m = /maxrss (\d+)\s*$/.exec(stderr);
  if (!m) throw new Error(`no maxrss in: ${stderr}`);
  return Number(m[1]) / 1024;
}

const PHASES = ['load', 'lookup', 'image', 'graft', 'spawn', 'wait', 'ungraft', 'total'];

/** The CRASHCART_TIMING=1 line of one attach, as numbers. */
async function phases(args: string[]): Promise<Record<string, number>> {
  const { stderr } = await run(cli, args, { ...env, CRASHCART_TIMING: '1' });
  const line = stderr.split('\n').find((l) => l.includes('timing (ms):'));
  if (!line) throw new Error(`no timing line in: ${stderr}`);
  return Object.fromEntries([...line.matchAll(/(\w+) ([0-9.]+)/g)].filter((m) => PHASES.includes(m[1]!)).map((m) => [m[1]!, Number(m[2])]));
}

const MiB = 1048576;
const median = (xs: number[]) => stat(xs).median;

async function build(profile: string, out: string, cache: string): Promise<{ s: number; mib: number }> {
  const t0 = performance.now();
  await execa(cli, ['image', 'build', '--profile', profile, '-o', out], { env: { ...env, CRASHCART_CACHE_DIR: cache }, stdin: 'ignore' });
  return { s: (performance.now() - t0) / 1000, mib: statSync(out).size / MiB };
}

/** CPU seconds (user + system) of this process's children that have been waited for. */
function childCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) / 100; // cutime, cstime: clock ticks (USER_HZ 100)
}

/** One connection: `size` random bytes out, then a FIN; resolves when all came back (ms). */
function echoRoundTrip(port: number, size: number): Promise<number> {
  const data = randomBytes(size);
  const want = createHash('sha256').update(data).digest('hex');
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const h = createHash('sha256');
    s.on('data', (d: Buffer) => h.update(d));
    s.on('end', () => {
      s.end();
      if (h.digest('hex') !== want) reject(new Error(`port ${port}: the bytes did not come back whole`));
      else resolve(performance.now() - t0);
    });
    s.on('error', (e) => reject(new Error(`port ${port}: ${e.message}`)));
    s.end(data);
  });
}

/** Until something accepts on 127.0.0.1:port. */
async function listening(port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

/**
 * crashcart forward next to socat (a listener on the host that forks nsenter + socat into
 * the container's network namespace for each connection), into an echo server bound to
 * 127.0.0.1 in a runc container's own namespace.
 */
async function forwardFigures(made: ScratchContainer[], closers: (() => Promise<void>)[], forwardRounds: number): Promise<Record<string, { latencyMs: number; mibps: number; concurrentMs: number }>> {
  const echo = join(work, 'echo');
  await execa('gcc', ['-static', '-O2', '-o', echo, join(projectDir, 'test/fixtures/echo.c')], { stdin: 'ignore' });
  const c = await createScratchContainer({ sleeperPath: echo, programPath: '/bin/echo', args: ['/bin/echo', '8080'], readOnly: false });
  made.push(c);
  const fwd = execa(cli, ['forward', c.id, ':8080'], { env, stdin: 'ignore', reject: false });
  closers.push(async () => {
    fwd.kill('SIGINT');
    await fwd;
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    fwd.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /:(\d+) -> /.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void fwd.then((r) => reject(new Error(`crashcart forward exited: ${r.stderr}`)));
  });
  const socatPort = port === 18099 || port === 18097 ? 18095 : 18099;
  // -t 60: by default socat gives the other direction only 0.5 s after one side's EOF, and
  // cuts a long echo short (a half-close it does not wait for)
  const socat = execa('socat', ['-t', '60', `TCP-LISTEN:${socatPort},bind=127.0.0.1,reuseaddr,fork,backlog=512`, `EXEC:nsenter -t ${c.pid} -n socat -t 60 - TCP\\:127.0.0.1\\:8080`], { stdin: 'ignore', reject: false });
  closers.push(async () => {
    socat.kill('SIGTERM');
    await socat;
  });
  await listening(socatPort);
  // the floor: the same server and client with no relay and no namespace between them
  const directPort = socatPort - 2;
  const direct = execa(echo, [String(directPort)], { stdin: 'ignore', reject: false });
  closers.push(async () => {
    direct.kill('SIGTERM');
    await direct;
  });
  await listening(directPort);
  const relays: Record<string, number> = { 'no relay (the server on the host)': directPort, 'crashcart forward': port, 'socat + nsenter per connection': socatPort };
  const rows: Record<string, { latency: number[]; mibps: number[]; concurrent: number[] }> = {};
  for (const name of Object.keys(relays)) rows[name] = { latency: [], mibps: [], concurrent: [] };
  const big = 128 << 20;
  for (let i = 0; i < forwardRounds; i++) {
    for (const [name, p] of Object.entries(relays)) {
      const lat: number[] = [];
      for (let j = 0; j < 50; j++) lat.push(await echoRoundTrip(p, 1));
      rows[name]!.latency.push(median(lat));
      rows[name]!.mibps.push((2 * big) / MiB / ((await echoRoundTrip(p, big)) / 1000));
      const t0 = performance.now();
      await Promise.all(Array.from({ length: 200 }, () => echoRoundTrip(p, 65_536)));
      rows[name]!.concurrent.push(performance.now() - t0);
    }
  }
  console.log(`crashcart forward: ${forwardRounds} rounds, medians; an echo server on 127.0.0.1 in a runc container's own network namespace`);
  console.log(`  ${''.padEnd(32)} ${'connect+1 byte'.padStart(15)} ${'1 connection'.padStart(14)} ${'200 at once, 64 KiB each'.padStart(25)}`);
  for (const [name, r] of Object.entries(rows)) {
    console.log(`  ${name.padEnd(32)} ${`${median(r.latency).toFixed(2)} ms`.padStart(15)} ${`${median(r.mibps).toFixed(0)} MiB/s`.padStart(14)} ${`${median(r.concurrent).toFixed(0)} ms`.padStart(25)}`);
  }
  console.log('  (throughput counts both directions: 128 MiB out and the same back)');
  return Object.fromEntries(Object.entries(rows).map(([name, r]) => [name, { latencyMs: median(r.latency), mibps: median(r.mibps), concurrentMs: median(r.concurrent) }]));
}

function machine() {
  const model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  return { cpu: model, cores: cpus().length, kernel: release(), node: process.version, loadavg: loadavg().map((l) => Number(l.toFixed(2))) };
}

async function main() {
  const results: Results = { machine: machine(), date: new Date().toISOString(), rounds: opts.rounds };
  console.log(`crashcart benchmark on ${results.machine.cpu}, ${results.machine.cores} cores, Linux ${results.machine.kernel}, Node ${results.machine.node}, load average ${results.machine.loadavg.join(' ')}`);
  const made: ScratchContainer[] = [];
  const closers: (() => Promise<void>)[] = [];
  const start = async (n = 1) => {
    const cs = await Promise.all(Array.from({ length: n }, () => createScratchContainer({ sleeperPath: join(projectDir, 'build', 'Release', 'sleeper'), busybox: true })));
    made.push(...cs);
    return cs;
  };
  try {
    const image = join(work, 'static.img');
    let t0 = performance.now();
    await execa(cli, ['image', 'build', '--profile', 'static', '-o', image], { env });
    const staticBuildMs = performance.now() - t0;
    // a copy: its own loop device, which no other case keeps attached
    const coldImage = join(work, 'static-cold.img');
    copyFileSync(image, coldImage);
    const [cold, warm] = (await start(2)) as [ScratchContainer, ScratchContainer];

    if (opts.only.has('attach') || opts.only.has('phases') || opts.only.has('rss')) {
      const holder = await holdGraft(image, warm.id);
      closers.push(holder.stop);
    }

    if (opts.only.has('attach')) {
      let dockerd: PrivateDockerd | undefined;
      const cases: Record<string, () => Promise<number>> = {
        'node -e 0': () => timed('node', ['-e', '0']),
        'nsenter -t PID -a true': () => timed('nsenter', ['-t', String(warm.pid), '-a', '/bin/busybox', 'true']),
        'runc exec': () => timed('runc', ['exec', warm.id, '/bin/busybox', 'true']),
        'crashcart, cold': () => timed(cli, ['-i', coldImage, cold.id, '--', '/dev/crashcart/bin/true']),
        'crashcart, warm': () => timed(cli, ['-i', image, warm.id, '--', '/dev/crashcart/bin/true']),
        'crashcart --exec, warm': () => timed(cli, ['-i', image, '--exec', warm.id, '--', '/dev/crashcart/bin/true']),
      };
      try {
        dockerd = await startDockerd();
        closers.unshift(() => dockerd!.stop());
        // the target and the sidecar's image: static programs only (the sleeper, busybox), from local files
        await importScratchRoot(dockerd.docker, 'docker', dockerd.dir, 'crashcart-bench-scratch', join(projectDir, 'build', 'Release', 'sleeper'), { busybox: true });
        const denv = { ...env, ...dockerd.env };
        const r = await dockerd.docker(['run', '-d', '--network', 'none', '--name', 'bench-target', 'crashcart-bench-scratch', '/bin/sleeper', '100000']);
        if (r.code !== 0) throw new Error(`docker run: ${r.stderr}`);
        const dholder = await (async () => {
          const child = spawn(cli, ['-i', image, 'bench-target', '--', 'sh', '-c', 'read x'], { env: denv, stdio: ['pipe', 'ignore', 'inherit'] });
          const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
          await run(cli, ['-i', image, 'bench-target', '--', 'true'], denv); // the graft is in place once this one ran
          return { stop: async () => { child.stdin!.end('\n'); await exited; } };
        })();
        closers.unshift(dholder.stop);
        Object.assign(cases, {
          'docker exec': () => timed('docker', ['exec', 'bench-target', '/bin/busybox', 'true'], denv),
          'sidecar (docker run --pid --network container:X)': () => timed('docker', ['run', '--rm', '--pid', 'container:bench-target', '--network', 'container:bench-target', 'crashcart-bench-scratch', '/bin/busybox', 'true'], denv),
          'crashcart, warm, docker container': () => timed(cli, ['-i', image, 'bench-target', '--', '/dev/crashcart/bin/true'], denv),
        });
      } catch (e) {
        console.log(`  (no private dockerd: ${(e as Error).message.split('\n')[0]}; docker exec and the sidecar are left out)`);
      }
      const attach = await sideBySide(cases, opts.rounds);
      results.attach = attach;
      printTable(`attach and run true: ${opts.rounds} rounds, median (min-max), ratio to node -e 0`, attach, 'node -e 0');
      const w = attach['crashcart, warm']!.median;
      const ratios: Record<string, number> = { 'warm / node -e 0': w / attach['node -e 0']!.median };
      if (attach['docker exec']) {
        ratios['warm / sidecar'] = w / attach['sidecar (docker run --pid --network container:X)']!.median;
        ratios['warm / docker exec'] = w / attach['docker exec']!.median;
      }
      results.ratios = ratios;
      const limits: Record<string, number> = { 'warm / node -e 0': 1.25, 'warm / sidecar': 0.5, 'warm / docker exec': 1.3 };
      for (const [k, v] of Object.entries(ratios)) console.log(`  ${k.padEnd(22)} x${v.toFixed(2)}  (target <= x${limits[k]})`);
      if (extraCaCerts) console.log(`  (every case without NODE_EXTRA_CA_CERTS=${extraCaCerts}, as under sudo)`);
      if (dockerd) {
        await dockerd.docker(['rm', '-f', 'bench-target']);
      }
    }

    if (opts.only.has('phases')) {
      const samples: Record<string, Record<string, number[]>> = { warm: {}, cold: {} };
      for (let i = 0; i < opts.rounds; i++) {
        for (const [which, args] of [['warm', ['-i', image, warm.id, '--', 'true']], ['cold', ['-i', coldImage, cold.id, '--', 'true']]] as const) {
          const p = await phases([...args]);
          for (const [k, v] of Object.entries(p)) (samples[which]![k] ??= []).push(v);
        }
      }
      results.phases = Object.fromEntries(Object.entries(samples).map(([w, ps]) => [w, Object.fromEntries(Object.entries(ps).map(([k, xs]) => [k, stat(xs).median]))]));
      console.log(`where an attach spends its time (CRASHCART_TIMING=1, medians of ${opts.rounds}, ms)`);
      for (const [w, ps] of Object.entries(results.phases)) console.log(`  ${w.padEnd(5)} ${PHASES.filter((p) => p in ps).map((p) => `${p} ${f1(ps[p]!)}`).join(', ')}`);
    }

    if (opts.only.has('rss')) {
      const rssRounds = Math.max(3, Math.ceil(opts.rounds / 3));
      const cases: Record<string, () => Promise<number>> = {
        'node -e 0': () => peakRss('node', ['-e', '0']),
        'crashcart, warm': () => peakRss(cli, ['-i', image, warm.id, '--', 'true']),
        'crashcart, cold': () => peakRss(cli, ['-i', coldImage, cold.id, '--', 'true']),
      };
      results.rss = await sideBySide(cases, rssRounds);
      printTable(`peak RSS (getrusage of the process, ${rssRounds} rounds)`, results.rss, 'node -e 0', 'MiB');
    }

    for (const close of closers.splice(0)) await close();

    if (opts.only.has('fanout')) {
      const sizes = opts.fanout;
      const many = await start(Math.max(...sizes));
      const fanRounds = Math.max(3, Math.ceil(opts.rounds / 3));
      const probe = await run(cli, ['-i', image, `${many[0]!.id},${many[1]!.id}`, '--', 'true']).then(() => true, () => false);
      if (!probe) {
        console.log('fan-out: not supported by this build (crashcart a,b -- true failed)');
      } else {
        const cases: Record<string, () => Promise<number>> = {};
        for (const n of sizes) cases[`${n}`] = () => timed(cli, ['-i', image, many.slice(0, n).map((c) => c.id).join(','), '--', 'true']);
        const fan = await sideBySide(cases, fanRounds);
        results.fanout = Object.fromEntries(Object.entries(fan).map(([n, s]) => [n, s]));
        console.log(`fan-out: crashcart c1,...,cN -- true (grafted and ungrafted in each), ${fanRounds} rounds, median (min-max)`);
        const one = fan['1']!.median;
        for (const [n, s] of Object.entries(fan)) {
          const per = Number(n) > 1 ? ` (${f1((s.median - one) / (Number(n) - 1))} ms per container after the first)` : '';
          console.log(`  ${n.padStart(3)} containers  ${f1(s.median).padStart(7)} ms  (${f1(s.min)}-${f1(s.max)})  x${(s.median / one).toFixed(2)} one${per}`);
        }
        if (results.attach && fan['20']) console.log(`  20 containers / one warm attach: x${(fan['20'].median / results.attach['crashcart, warm']!.median).toFixed(2)} (target <= x3)`);
      }
    }

    if (opts.only.has('hung')) {
      const hung = await hungSocket(join(work, 'hung.sock'));
      closers.push(hung.close);
      const hungEnv = { ...env, DOCKER_HOST: `unix://${hung.path}`, CONTAINERD_ADDRESS: hung.path };
      const r = await sideBySide({
        'exact runc ID': () => timed(cli, ['-i', image, cold.id, '--', 'true']),
        'exact runc ID, docker and containerd hung': () => timed(cli, ['-i', image, cold.id, '--', 'true'], hungEnv),
      }, Math.max(5, Math.ceil(opts.rounds / 2)));
      results.hung = r;
      printTable('hung daemons (they accept and never answer)', r, 'exact runc ID');
      const ratio = r['exact runc ID, docker and containerd hung']!.median / r['exact runc ID']!.median;
      console.log(`  hung vs none: x${ratio.toFixed(2)} (target <= x1.5)`);
    }

    if (opts.only.has('load')) {
      const n = 20;
      const targets = made.length >= n + 2 ? made.slice(2, n + 2) : await start(n);
      const together = async (cmds: [string, string[]][]) => {
        const cpu0 = childCpu();
        const t = performance.now();
        await Promise.all(cmds.map(([c, a]) => run(c, a)));
        return { wall: performance.now() - t, cpu: (childCpu() - cpu0) * 1000 };
      };
      const cases: Record<string, [string, string[]][]> = {
        [`${n} x node -e 0`]: targets.map(() => ['node', ['-e', '0']]),
        [`${n} x crashcart --version`]: targets.map(() => [cli, ['--version']]),
        [`${n} sessions into one container`]: targets.map(() => [cli, ['-i', image, cold.id, '--', 'true']]),
        [`one session into each of ${n} containers`]: targets.map((c) => [cli, ['-i', image, c.id, '--', 'true']]),
      };
      const out: Record<string, { wall: number[]; cpu: number[] }> = Object.fromEntries(Object.keys(cases).map((k) => [k, { wall: [], cpu: [] }]));
      for (let i = 0; i < 3; i++) {
        for (const [name, cmds] of Object.entries(cases)) {
          const r = await together(cmds);
          out[name]!.wall.push(r.wall);
          out[name]!.cpu.push(r.cpu);
        }
      }
      results.load = Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { wall: stat(v.wall), cpu: stat(v.cpu) }]));
      console.log(`under load: ${n} processes at once, 3 rounds, medians; cpu is user + system of all of them`);
      for (const [name, v] of Object.entries(results.load)) {
        console.log(`  ${name.padEnd(40)} wall ${(v.wall.median / 1000).toFixed(2).padStart(5)} s  cpu ${(v.cpu.median / 1000).toFixed(2).padStart(5)} s  (${(v.cpu.median / n).toFixed(0)} ms each)`);
      }
    }

    if (opts.only.has('images')) {
      const cache = join(work, 'image-cache');
      const coldBuild = await build('full', join(work, 'full-cold.img'), cache);
      const warmBuild = await build('full', join(work, 'full-warm.img'), cache);
      const minimal = await build('minimal', join(work, 'minimal.img'), cache);
      results.images = {
        'full size (MiB)': coldBuild.mib,
        'full build, empty .deb cache (s)': coldBuild.s,
        'full build, warm .deb cache (s)': warmBuild.s,
        'minimal size (MiB)': minimal.mib,
        'minimal build, warm .deb cache (s)': minimal.s,
        'static build (s)': staticBuildMs / 1000,
      };
      const targets: Record<string, number> = { 'full size (MiB)': 110, 'full build, empty .deb cache (s)': 60, 'full build, warm .deb cache (s)': 15, 'minimal size (MiB)': 20 };
      console.log('toolkit images');
      for (const [k, v] of Object.entries(results.images)) console.log(`  ${k.padEnd(36)} ${f1(v).padStart(7)}${k in targets ? `  (target <= ${targets[k]}: ${v <= targets[k]! ? 'ok' : 'OVER'})` : ''}`);
    }
    if (opts.only.has('forward')) results.forward = await forwardFigures(made, closers, Math.max(3, Math.ceil(opts.rounds / 5)));
    t0 = performance.now();
  } finally {
    for (const close of closers) await close().catch((e: Error) => console.error(`cleanup: ${e.message}`));
    for (const m of made) await m.remove().catch((e: Error) => console.error(`cleanup: ${e.message}`));
    rmSync(work, { recursive: true, force: true });
  }
  results.machine.loadavgAfter = loadavg().map((l) => Number(l.toFixed(2)));
  mkdirSync(opts.out, { recursive: true });
  if (opts.only.has('attach') && opts.only.has('fanout')) {
    writeFileSync(join(opts.out, 'speed.json'), `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(join(opts.out, 'speed.svg'), drawSvg(results));
    console.log(`wrote ${join(opts.out, 'speed.json')} and ${join(opts.out, 'speed.svg')}`);
  } else {
    const file = join(opts.out, `speed-${[...opts.only].join('-')}.json`);
    writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`wrote ${file}`);
  }
}

await main();
