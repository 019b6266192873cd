// Toolkit image figures (size, build time with an empty and a warm .deb cache) against
// their targets, then attach latency, measured side by side in one run (the machine is
// shared and noisy): each round runs every case once, in turn, and the table shows medians
// and ratios. One case has docker's and containerd's sockets hung (they accept and never
// answer): an exact runc ID must not be held up by them. Then load: 20 sessions at once.
// Then crashcart forward against a socat relay that does the same (nsenter + socat per
// connection, as dockershim's port-forward did): connect latency, one connection's
// throughput, 200 connections at once.
//   npm run bench [-- ROUNDS]
//   npm run bench -- forward [ROUNDS]   (the forward section alone)
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../src/demo/scratch.js';
import { projectDir } from '../src/native/index.js';

const only = process.argv[2] === 'forward' ? 'forward' : undefined;
const rounds = Number(process.argv[only ? 3 : 2] ?? 15);
const cli = join(projectDir, 'bin', 'crashcart');
const work = mkdtempSync(join(tmpdir(), 'crashcart-bench-'));
const env = { ...process.env, CRASHCART_STATE_DIR: join(work, 'state'), CRASHCART_CACHE_DIR: join(work, 'cache'), CRASHCART_AUDIT_LOG: join(work, 'audit.log') };

async function timed(cmd: string, args: string[], withEnv = env): Promise<number> {
  const t0 = performance.now();
  await execa(cmd, args, { env: withEnv, stdin: 'ignore' });
  return performance.now() - t0;
}

const NORMAL = 'crashcart -- true (graft + ungraft)';
const HUNG = 'same, docker and containerd hung';

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

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const MiB = 1048576;

/** Builds a profile with the CLI into the bench's own cache; returns seconds and MiB. */
async function build(profile: string, out: string, cache: string): Promise<{ s: number; mib: number }> {
  const t0 = performance.now();
  await execa(cli, ['image', 'build', '--profile', profile, '-o', out], { env: { ...env, CRASHCART_CACHE_DIR: cache }, stdin: 'ignore' });
  return { s: (performance.now() - t0) / 1000, mib: statSync(out).size / MiB };
}

const verdict = (ok: boolean) => (ok ? 'ok' : 'OVER TARGET');

/** CPU seconds (user + system) of this process's children that have been waited for. */
function childCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[13]) + Number(f[14])) / 100; // cutime, cstime: clock ticks (USER_HZ 100)
}

/** Runs every command at once; returns the wall time and the CPU time they used, in ms. */
async function together(cmds: [string, string[]][]): Promise<{ wall: number; cpu: number }> {
  const cpu0 = childCpu();
  const t0 = performance.now();
  await Promise.all(cmds.map(([cmd, args]) => execa(cmd, args, { env, stdin: 'ignore' })));
  return { wall: performance.now() - t0, cpu: (childCpu() - cpu0) * 1000 };
}

/**
 * Load: N sessions at once into one container and into N containers, next to N Node starts
 * and N CLI loads at once, so the table shows where the time goes: what is Node starting,
 * what is loading crashcart's modules, and what is the attach itself (its CPU, and the rest:
 * waiting for the state lock and for the other processes on two cores).
 */
async function loadFigures(image: string, one: ScratchContainer, many: ScratchContainer[], loadRounds = 3): Promise<void> {
  const n = many.length;
  const cases: Record<string, [string, string[]][]> = {
    [`${n} x node -e 0`]: many.map(() => ['node', ['-e', '0']]),
    [`${n} x crashcart --version`]: many.map(() => [cli, ['--version']]),
    [`${n} sessions into one container`]: many.map(() => [cli, ['-i', image, one.id, '--', 'true']]),
    [`one session into each of ${n} containers`]: many.map((c) => [cli, ['-i', image, c.id, '--', 'true']]),
  };
  const results: Record<string, { wall: number[]; cpu: number[] }> = Object.fromEntries(Object.keys(cases).map((k) => [k, { wall: [], cpu: [] }]));
  for (let i = 0; i < loadRounds; i++) {
    for (const [name, cmds] of Object.entries(cases)) {
      const r = await together(cmds);
      results[name].wall.push(r.wall);
      results[name].cpu.push(r.cpu);
    }
  }
  console.log(`crashcart under load: ${loadRounds} rounds, medians; cpu is user + system of all ${n} processes`);
  for (const [name, r] of Object.entries(results)) {
    console.log(`  ${name.padEnd(40)} wall ${(median(r.wall) / 1000).toFixed(2).padStart(5)} s  cpu ${(median(r.cpu) / 1000).toFixed(2).padStart(5)} s  (${(median(r.cpu) / n).toFixed(0)} ms each)`);
  }
  const [node, version, into] = Object.values(results).map((r) => median(r.cpu));
  console.log(`  of the cpu of ${n} sessions into one container: Node's start ${((node / into) * 100).toFixed(0)}%, ` +
    `loading crashcart ${(((version - node) / into) * 100).toFixed(0)}%, the attach itself ${(((into - version) / into) * 100).toFixed(0)}%`);
}

/**
 * The image figures. The cache is new, so the first full build starts from an empty .deb
 * cache (downloads included) and the second one finds every .deb and unpacked tree there.
 */
async function imageFigures(): Promise<void> {
  const cache = join(work, 'image-cache');
  const cold = await build('full', join(work, 'full-cold.img'), cache);
  const warm = await build('full', join(work, 'full-warm.img'), cache);
  const minimal = await build('minimal', join(work, 'minimal.img'), cache);
  const rows: [string, string, string, boolean][] = [
    ['full image size', `${cold.mib.toFixed(1)} MiB`, '<= 110 MiB', cold.mib <= 110],
    ['full build, empty .deb cache', `${cold.s.toFixed(1)} s`, '<= 60 s', cold.s <= 60],
    ['full build, warm .deb cache', `${warm.s.toFixed(1)} s`, '<= 15 s', warm.s <= 15],
    ['minimal image size', `${minimal.mib.toFixed(1)} MiB`, '<= 20 MiB', minimal.mib <= 20],
    ['minimal build, warm .deb cache', `${minimal.s.toFixed(1)} s`, '', true],
  ];
  console.log('crashcart toolkit images');
  for (const [name, value, target, ok] of rows) {
    console.log(`  ${name.padEnd(32)} ${value.padStart(10)}  ${target.padEnd(10)} ${target ? verdict(ok) : ''}`.trimEnd());
  }
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
async function forwardFigures(made: ScratchContainer[], closers: (() => Promise<void>)[], forwardRounds: number): Promise<void> {
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
      rows[name].latency.push(median(lat));
      rows[name].mibps.push((2 * big) / MiB / ((await echoRoundTrip(p, big)) / 1000));
      const t0 = performance.now();
      await Promise.all(Array.from({ length: 200 }, () => echoRoundTrip(p, 65_536)));
      rows[name].concurrent.push(performance.now() - t0);
    }
  }
  console.log(`crashcart forward: ${forwardRounds} rounds, medians; an echo server on 127.0.0.1 in a runc container's own network namespace`);
  console.log(`  ${''.padEnd(32)} ${'connect+1 byte'.padStart(15)} ${'1 connection'.padStart(14)} ${'200 at once, 64 KiB each'.padStart(25)}`);
  for (const [name, r] of Object.entries(rows)) {
    console.log(`  ${name.padEnd(32)} ${`${median(r.latency).toFixed(2)} ms`.padStart(15)} ${`${median(r.mibps).toFixed(0)} MiB/s`.padStart(14)} ${`${median(r.concurrent).toFixed(0)} ms`.padStart(25)}`);
  }
  console.log('  (throughput counts both directions: 128 MiB out and the same back)');
}

async function main() {
  // whatever fails, the containers go and so does the work directory
  const made: ScratchContainer[] = [];
  const closers: (() => Promise<void>)[] = [];
  const start = async () => {
    const container = await createScratchContainer({ sleeperPath: join(projectDir, 'build', 'Release', 'sleeper'), busybox: true });
    made.push(container);
    return container;
  };
  try {
    if (only === 'forward') {
      await forwardFigures(made, closers, rounds);
      return;
    }
    await imageFigures();
    const t0 = performance.now();
    const image = join(work, 'static.img');
    await execa(cli, ['image', 'build', '--profile', 'static', '-o', image], { env });
    const buildMs = performance.now() - t0;

    const c = await start();
    const pinned = await start();
    await execa(cli, ['-i', image, '-m', pinned.id], { env });
    const hung = await hungSocket(join(work, 'hung.sock'));
    closers.push(hung.close);
    const hungEnv = { ...env, DOCKER_HOST: `unix://${hung.path}`, CONTAINERD_ADDRESS: hung.path };
    const cases: Record<string, () => Promise<number>> = {
      'node -e 0': () => timed('node', ['-e', '0']),
      'nsenter -a (no toolkit)': () => timed('nsenter', ['-t', String(c.pid), '-a', '/bin/busybox', 'true']),
      'runc exec (no toolkit)': () => timed('runc', ['exec', c.id, '/bin/busybox', 'true']),
      [NORMAL]: () => timed(cli, ['-i', image, c.id, '--', 'true']),
      [HUNG]: () => timed(cli, ['-i', image, c.id, '--', 'true'], hungEnv),
      'crashcart -- true (already grafted)': () => timed(cli, ['-i', image, pinned.id, '--', 'true']),
      'crashcart --exec -- true (runc exec)': () => timed(cli, ['-i', image, '--exec', c.id, '--', 'true']),
    };
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
    for (const run of Object.values(cases)) await run(); // warm caches once
    for (let i = 0; i < rounds; i++) {
      for (const [name, run] of Object.entries(cases)) samples[name].push(await run());
    }
    const base = median(samples['runc exec (no toolkit)']);
    console.log(`crashcart benchmark: ${rounds} rounds, medians (ms), ratio to runc exec`);
    for (const [name, xs] of Object.entries(samples)) {
      console.log(`  ${name.padEnd(40)} ${median(xs).toFixed(1).padStart(7)}  x${(median(xs) / base).toFixed(2)}`);
    }
    const ratio = median(samples[HUNG]) / median(samples[NORMAL]);
    console.log(`  hung daemons vs none, exact runc ID: x${ratio.toFixed(2)} (target <= x1.5: ${verdict(ratio <= 1.5)})`);
    console.log(`  static image build (warm .deb cache: ${work}/cache/debs is new, so cold)  ${buildMs.toFixed(0)} ms`);
    await execa(cli, ['-u', pinned.id], { env });
    const many = await Promise.all(Array.from({ length: 20 }, () => start()));
    await loadFigures(image, c, many);
    await forwardFigures(made, closers, 3);
  } finally {
    for (const close of closers) await close();
    for (const m of made) await m.remove();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
