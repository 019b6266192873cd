// crashcart doctor on this machine, through the real CLI: everything an attach needs is
// there; a state directory others can write fails with what to do; daemon sockets that
// accept and never answer (docker's, containerd's) cost about a second and a warning, not
// a hang; not root is one line and 125.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { CheckResult } from '../../src/doctor/checks.js';
import { privateDirs, runCrashcart } from '../helpers/cli.js';
import { assertNoLeaks, projectRoot, requireCommand, requireRoot, snapshotHost } from '../helpers/host.js';

/** What an attach cannot do without: these must be ok on the test machine. */
const NEEDED = ['root', 'capabilities', 'loop-control', 'loop-device', 'ext3', 'mount-api', 'namespaces'];

const ALL = [...NEEDED, 'cgroups', 'runtimes', 'image-cache', 'image', 'state-dir', 'audit-log', 'build-tools'];

function scratchDir(t: TestContext, mode?: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-doctor-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  if (mode !== undefined) chmodSync(dir, mode);
  return dir;
}

/** The audit log in a private directory, so what other tests do to the default does not matter here. */
const auditEnv = (t: TestContext) => ({ CRASHCART_AUDIT_LOG: join(scratchDir(t), 'log', 'audit.log') });

async function doctorJson(env: Record<string, string>): Promise<{ code: number | null; results: CheckResult[]; ms: number; stderr: string }> {
  const t0 = performance.now();
  const r = await runCrashcart(['doctor', '--json'], { env, timeout: 30_000 });
  const ms = performance.now() - t0;
  let results: CheckResult[];
  try {
    results = JSON.parse(r.stdout) as CheckResult[];
  } catch {
    throw new Error(`crashcart doctor --json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, results, ms, stderr: r.stderr };
}

const byName = (results: CheckResult[], name: string) => {
  const r = results.find((x) => x.check === name);
  assert.ok(r, `no ${name} check in ${JSON.stringify(results.map((x) => x.check))}`);
  return r;
};

/** A unix socket that accepts, reads and never answers: a hung daemon. */
async function hungSocket(t: TestContext, path: string): Promise<{ path: string; accepted(): number; allClosed(): Promise<void> }> {
  const conns: Socket[] = [];
  let open = 0;
  let wake: (() => void) | undefined;
  const server = createServer((c) => {
    conns.push(c);
    open++;
    c.resume();
    c.on('close', () => {
      if (--open === 0) wake?.();
    });
  });
  t.after(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    accepted: () => conns.length,
    allClosed: () => (open === 0 ? Promise.resolve() : new Promise<void>((resolve) => (wake = resolve))),
  };
}

describe('crashcart doctor', { skip: process.getuid?.() !== 0 && 'needs root' }, () => {
  test('on this machine: exit 0, every check an attach needs ok, nothing created or left behind', async (t) => {
    if (!requireRoot(t)) return;
    const env = auditEnv(t);
    const before = await snapshotHost();
    const t0 = performance.now();
    const r = await runCrashcart(['doctor'], { env, timeout: 30_000 });
    const ms = Math.round(performance.now() - t0);
    t.diagnostic(`crashcart doctor took ${ms} ms`);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(r.stderr, '');
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^CHECK +STATUS +DETAIL$/);
    for (const name of NEEDED) {
      assert.ok(lines.some((l) => new RegExp(`^${name} +ok +\\S`).test(l)), `${name} is not ok:\n${r.stdout}`);
    }
    // every warn or fail row is followed by what to do
    lines.forEach((l, i) => {
      if (/^\S+ +(warn|fail) /.test(l)) assert.match(lines[i + 1]!, /^ +fix: \S/, `no fix line after: ${l}`);
    });
    assert.match(lines.at(-1)!, /^crashcart can attach on this host/);
    assert.ok(ms < 5_000, `${ms} ms`);
    assertNoLeaks(before, await snapshotHost());
    // it only looks: no state, cache or audit directory made
    const { state, cache } = privateDirs();
    assert.ok(!existsSync(state) && !existsSync(cache), 'doctor created the state or cache directory');
    assert.ok(!existsSync(env.CRASHCART_AUDIT_LOG.replace(/\/audit\.log$/, '')), 'doctor created the audit directory');
  });

  test('--json: an array of {check, status, detail, fix?}, fix exactly on warn and fail', async (t) => {
    if (!requireRoot(t)) return;
    const { code, results, stderr } = await doctorJson(auditEnv(t));
    assert.equal(code, 0, JSON.stringify(results, null, 2) + stderr);
    for (const name of ALL) byName(results, name);
    for (const r of results) {
      assert.deepEqual(Object.keys(r).sort(), r.status === 'ok' ? ['check', 'detail', 'status'] : ['check', 'detail', 'fix', 'status'], JSON.stringify(r));
      assert.ok(['ok', 'warn', 'fail'].includes(r.status), JSON.stringify(r));
      assert.equal(typeof r.detail, 'string');
      assert.ok(r.detail.length > 0 && !r.detail.includes('\n'), JSON.stringify(r));
    }
    for (const name of NEEDED) assert.equal(byName(results, name).status, 'ok', JSON.stringify(byName(results, name)));
    // runc is installed here: it is found and answers
    assert.match(byName(results, 'runtime:runc').detail, /^\d+ containers? \(\d+ running\), answered in \d+ ms$/);
  });

  test('a state directory of mode 0777 fails, with the chmod that fixes it; exit 1', async (t) => {
    if (!requireRoot(t)) return;
    const dir = scratchDir(t, 0o777);
    const env = { ...auditEnv(t), CRASHCART_STATE_DIR: dir };
    const r = await runCrashcart(['doctor'], { env, timeout: 30_000 });
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    const lines = r.stdout.split('\n');
    const i = lines.findIndex((l) => l.startsWith('state-dir '));
    assert.match(lines[i] ?? '', new RegExp(`^state-dir +fail +${dir}: mode 777: others can write the records root acts on \\(must be 700\\)`), r.stdout);
    assert.match(lines[i + 1] ?? '', new RegExp(`^ +fix: chmod 700 ${dir}(;|$)`));
    assert.match(r.stdout, /crashcart cannot attach on this host: 1 check failed \(state-dir\)$/);

    const { code, results } = await doctorJson(env);
    assert.equal(code, 1);
    const state = byName(results, 'state-dir');
    assert.equal(state.status, 'fail');
    assert.match(state.fix!, new RegExp(`^chmod 700 ${dir}`));
    // doctor reports; it does not change the directory
    assert.equal(statSync(dir).mode & 0o7777, 0o777);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('docker and containerd sockets that accept and never answer: warnings naming them, within seconds', async (t) => {
    if (!requireRoot(t)) return;
    const dir = scratchDir(t);
    const docker = await hungSocket(t, join(dir, 'docker.sock'));
    const containerd = await hungSocket(t, join(dir, 'containerd.sock'));

    const { code, results, ms, stderr } = await doctorJson({ ...auditEnv(t), DOCKER_HOST: `unix://${docker.path}`, CONTAINERD_ADDRESS: containerd.path });
    t.diagnostic(`crashcart doctor with hung docker and containerd took ${Math.round(ms)} ms`);
    assert.ok(ms < 5_000, `${ms} ms`);
    assert.equal(code, 0, JSON.stringify(results, null, 2) + stderr); // a hung runtime is a warning
    for (const [name, socket] of [['docker', docker], ['containerd', containerd]] as const) {
      const r = byName(results, `runtime:${name}`);
      assert.equal(r.status, 'warn', JSON.stringify(r));
      assert.ok(r.detail.includes(socket.path), r.detail);
      assert.match(r.detail, /within 1 s/);
      assert.ok(r.fix?.includes(socket.path), r.fix);
      assert.match(byName(results, 'runtimes').detail, new RegExp(`\\b${name}\\b`));
      // it really asked, and hung up
      assert.ok(socket.accepted() >= 1, `doctor never connected to ${socket.path}`);
      await socket.allClosed();
    }
  });

  test('not root: exit 125 and one line', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'setpriv')) return;
    const r = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, join(projectRoot(), 'bin', 'crashcart'), 'doctor'], {
      cwd: '/', reject: false, stdin: 'ignore', timeout: 30_000,
    });
    assert.equal(r.exitCode, 125, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^crashcart: crashcart doctor needs root \([^\n]+\); run it with sudo$/);
  });
});
