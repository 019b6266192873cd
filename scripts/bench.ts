// Attach latency, measured side by side in one run (the machine is shared and noisy):
// each round runs every case once, in turn, and the table shows medians and ratios.
//   npm run bench [-- ROUNDS]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { createScratchContainer } from '../src/demo/scratch.js';
import { projectDir } from '../src/native/index.js';

const rounds = Number(process.argv[2] ?? 15);
const cli = join(projectDir, 'bin', 'crashcart');
const work = mkdtempSync(join(tmpdir(), 'crashcart-bench-'));
const env = { ...process.env, CRASHCART_STATE_DIR: join(work, 'state'), CRASHCART_CACHE_DIR: join(work, 'cache') };

async function timed(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  await execa(cmd, args, { env, stdin: 'ignore' });
  return performance.now() - t0;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  const t0 = performance.now();
  const image = join(work, 'static.img');
  await execa(cli, ['image', 'build', '-o', image], { env });
  const buildMs = performance.now() - t0;

  const c = await createScratchContainer({ sleeperPath: join(projectDir, 'build', 'Release', 'sleeper'), busybox: true });
  const pinned = await createScratchContainer({ sleeperPath: join(projectDir, 'build', 'Release', 'sleeper'), busybox: true });
  try {
    await execa(cli, ['-i', image, '-m', pinned.id], { env });
    const cases: Record<string, () => Promise<number>> = {
      'node -e 0': () => timed('node', ['-e', '0']),
      'nsenter -a (no toolkit)': () => timed('nsenter', ['-t', String(c.pid), '-a', '/bin/busybox', 'true']),
      'runc exec (no toolkit)': () => timed('runc', ['exec', c.id, '/bin/busybox', 'true']),
      'crashcart -- true (graft + ungraft)': () => timed(cli, ['-i', image, c.id, '--', 'true']),
      'crashcart -- true (already grafted)': () => timed(cli, ['-i', image, pinned.id, '--', 'true']),
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
    console.log(`  static image build (warm .deb cache: ${work}/cache/debs is new, so cold)  ${buildMs.toFixed(0)} ms`);
    await execa(cli, ['-u', pinned.id], { env });
  } finally {
    await c.remove();
    await pinned.remove();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
