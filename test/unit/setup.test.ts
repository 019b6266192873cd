// The README's first command (scripts/setup.sh) installs crashcart and its demo and no
// container runtime beyond runc; the test suite's runtimes come with `npm test`
// (scripts/setup-test.sh), which costs nothing when they are there; .ci/run runs exactly
// the README's two commands.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { projectRoot } from '../helpers/host.js';

/** Container runtimes, their daemons and what a Kubernetes node's stack is made of. */
const RUNTIMES = /^(docker(\.io|-ce)?|containerd(\.io)?|podman|conmon|crun|lxc|lxd|systemd-container|cri-o|netavark|aardvark-dns|iptables|nftables|bridge-utils|kubelet|kubernetes.*)$/;

async function packagesOf(script: string): Promise<string[]> {
  const text = await readFile(join(projectRoot(), script), 'utf8');
  const m = /^packages=\(([^)]*)\)$/m.exec(text);
  assert.ok(m, `no packages=(...) in ${script}`);
  return m[1]!.trim().split(/\s+/);
}

/** Under CI nothing may skip. */
function skipOrFail(t: TestContext, why: string): void {
  if (process.env.CI) assert.fail(why);
  t.skip(why);
}

describe('installing', () => {
  test('scripts/setup.sh installs no container runtime beyond runc, not even through dependencies', async (t) => {
    const packages = await packagesOf('scripts/setup.sh');
    assert.deepEqual(packages.filter((p) => RUNTIMES.test(p)), []);
    assert.ok(packages.includes('runc'));
    const text = await readFile(join(projectRoot(), 'scripts/setup.sh'), 'utf8');
    assert.match(text, /apt-get install -y -qq --no-install-recommends "\$\{packages\[@\]\}"/);
    // what apt would bring with them (Depends and Pre-Depends, as --no-install-recommends installs)
    const r = await execa('apt-cache', ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', ...packages], { reject: false });
    if (r.exitCode !== 0) return skipOrFail(t, `apt-cache depends failed: ${r.stderr}`);
    const closure = [...new Set(r.stdout.split('\n').filter((l) => l && !l.startsWith(' ')).map((l) => l.replace(/^<|>$/g, '')))];
    assert.ok(closure.length > packages.length, 'apt-cache listed no dependencies');
    assert.deepEqual(closure.filter((p) => RUNTIMES.test(p)), []);
  });

  test('npm test starts with scripts/setup-test.sh, which installs the suite\'s runtimes', async () => {
    const pkg = JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.match(pkg.scripts.test!, /^scripts\/setup-test\.sh && /);
    const packages = await packagesOf('scripts/setup-test.sh');
    for (const p of ['docker.io', 'containerd', 'podman', 'crun', 'lxc', 'systemd-container', 'tmux', 'musl-tools']) assert.ok(packages.includes(p), p);
  });

  test('scripts/setup-test.sh does nothing, quickly, when everything is there', async (t) => {
    const packages = await packagesOf('scripts/setup-test.sh');
    const missing = (await execa(join(projectRoot(), 'scripts/missing-packages.sh'), packages)).stdout;
    if (missing) return skipOrFail(t, `not installed here: ${missing.replace(/\n/g, ' ')}`);
    const t0 = performance.now();
    const r = await execa(join(projectRoot(), 'scripts/setup-test.sh'), { reject: false, stdin: 'ignore' });
    const ms = performance.now() - t0;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
    // a generous bound: what it must not do is run apt (the output check above), which takes seconds
    assert.ok(ms < 10_000, `${Math.round(ms)} ms`);
  });

  test('.ci/run runs the README\'s Quick start commands', async () => {
    const readme = await readFile(join(projectRoot(), 'README.md'), 'utf8');
    const quick = readme.split(/^## Quick start$/m)[1]!.split(/^## /m)[0]!;
    const blocks = [...quick.matchAll(/^```sh\n([^`]*)```$/gm)].map((m) => m[1]!.trim());
    assert.deepEqual(blocks, ['scripts/setup.sh && crashcart demo', 'npm test']);
    const ci = await readFile(join(projectRoot(), '.ci/run'), 'utf8');
    assert.match(ci, /^scripts\/setup\.sh$/m);
    assert.match(ci, /^npm test$/m);
  });
});
