// Toolkit image figures (size, build time with an empty and a warm .deb cache) against
// their targets, then attach latency, measured side by side in one run (the machine is
// shared and noisy): each round runs every case once, in turn, and the table shows medians
// and ratios. One case has docker's and containerd's sockets hung (they accept and never
// answer): an exact runc ID must not be held up by them. Then load: 20 sessions at once.
//   npm run bench [-- ROUNDS]
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../src/demo/scratch.js';
import { projectDir } from '../src/native/index.js';

const rounds = Number(process.argv[2] ?? 15);
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
  } finally {
    for (const m of made) await m.remove();
    for (const close of closers) await close();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
