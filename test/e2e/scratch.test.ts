import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer, type ScratchOptions } from '../../src/demo/scratch.js';
import { assertNoLeaks, requireCommand, requireRoot, sleeperPath, snapshotHost, type HostSnapshot } from '../helpers/host.js';

let baseDir = '';
let sleeper = '';
const started: ScratchContainer[] = [];

before(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'crashcart-scratch-test-'));
  // user-namespaced containers must be able to traverse down to their rootfs
  await chmod(baseDir, 0o711);
});

after(async () => {
  for (const c of started) await c.remove().catch(() => {});
  if (baseDir) await rm(baseDir, { recursive: true, force: true });
});

function ready(t: import('node:test').TestContext): boolean {
  return requireRoot(t) && requireCommand(t, 'runc');
}

async function start(opts: Partial<ScratchOptions> = {}): Promise<ScratchContainer> {
  sleeper ||= await sleeperPath();
  const c = await createScratchContainer({ sleeperPath: sleeper, baseDir, ...opts });
  started.push(c);
  return c;
}

async function runcIds(runcRoot?: string): Promise<string[]> {
  const args = runcRoot ? ['--root', runcRoot, 'list', '-q'] : ['list', '-q'];
  const { stdout } = await execa('runc', args);
  return stdout.split('\n').filter(Boolean);
}

async function runcState(id: string): Promise<{ status: string; pid: number }> {
  return JSON.parse((await execa('runc', ['state', id])).stdout);
}

function rootMount(mountinfo: string): string[] {
  const line = mountinfo.split('\n').find((l) => l.split(' ')[4] === '/');
  assert.ok(line, 'no root mount in mountinfo');
  return line.split(' ')[5].split(',');
}

/** Alive and not a zombie. */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== '' && state !== 'Z';
}

async function assertRemoved(c: ScratchContainer, runcRoot?: string): Promise<void> {
  assert.ok(!(await runcIds(runcRoot)).includes(c.id), `${c.id} still in runc list`);
  assert.ok(!existsSync(c.bundleDir), `${c.bundleDir} still exists`);
  assert.ok(!(await running(c.pid)), `process ${c.pid} still runs`);
}

test('a scratch container runs the sleeper as PID 1 on a read-only root', async (t) => {
  if (!ready(t)) return;
  const t0 = performance.now();
  const c = await start();
  t.diagnostic(`start ${(performance.now() - t0).toFixed(0)} ms`);

  assert.match(c.id, /^crashcart-[0-9a-f]{12}$/);
  assert.equal(await readFile(`/proc/${c.pid}/cmdline`, 'utf8'), '/bin/sleeper\0');
  const status = await readFile(`/proc/${c.pid}/status`, 'utf8');
  assert.match(status, /^NSpid:\s+\d+\s+1$/m, 'PID 1 in its own PID namespace');
  const state = await runcState(c.id);
  assert.deepEqual([state.status, state.pid], ['running', c.pid]);
  assert.ok(rootMount(await readFile(`/proc/${c.pid}/mountinfo`, 'utf8')).includes('ro'), 'root mounted ro');
  const config = JSON.parse(await readFile(join(c.bundleDir, 'config.json'), 'utf8'));
  assert.deepEqual(config.root, { path: c.rootfs, readonly: true });
  assert.equal(config.process.terminal, false);
  assert.deepEqual((await readdir(c.rootfs)).sort(), ['bin', 'dev', 'etc', 'proc', 'sys', 'tmp']);
  assert.notEqual(await readlink(`/proc/${c.pid}/ns/mnt`), await readlink('/proc/self/ns/mnt'));

  const t1 = performance.now();
  await c.remove();
  t.diagnostic(`remove ${(performance.now() - t1).toFixed(0)} ms`);
  await assertRemoved(c);
  await c.remove(); // a second call is a no-op
});

test('readOnly false gives a writable root', async (t) => {
  if (!ready(t)) return;
  const c = await start({ readOnly: false });
  assert.ok(rootMount(await readFile(`/proc/${c.pid}/mountinfo`, 'utf8')).includes('rw'));
  await c.remove();
  await assertRemoved(c);
});

test('busybox variant has a shell and honours hostname, env and cwd', async (t) => {
  if (!ready(t)) return;
  const c = await start({ busybox: true, hostname: 'scratchy', env: ['FOO=bar', 'PATH=/bin'], cwd: '/work/here' });
  assert.ok((await stat(join(c.rootfs, 'bin/busybox'))).isFile());
  assert.equal(await readlink(join(c.rootfs, 'bin/sh')), 'busybox');
  const { stdout } = await execa('runc', ['exec', c.id, '/bin/sh', '-c', 'busybox hostname; pwd; echo $FOO'], { stdin: 'ignore' });
  assert.deepEqual(stdout.split('\n'), ['scratchy', '/work/here', 'bar']);
  await c.remove();
  await assertRemoved(c);
});

test('sleeper --listen answers on 127.0.0.1 inside the container', async (t) => {
  if (!ready(t)) return;
  const c = await start({ busybox: true, args: ['/bin/sleeper', '--listen', '7777'] });
  // 7777 = 0x1E61, state 0A = LISTEN, 0100007F = 127.0.0.1
  let tcp = '';
  for (let i = 0; i < 100 && !/0100007F:1E61 00000000:0000 0A/.test(tcp); i++) {
    tcp = await readFile(`/proc/${c.pid}/net/tcp`, 'utf8');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.match(tcp, /0100007F:1E61 00000000:0000 0A/);
  const { stdout } = await execa('runc', ['exec', c.id, '/bin/busybox', 'nc', '127.0.0.1', '7777'], { stdin: 'ignore' });
  assert.equal(stdout, 'crashcart sleeper');
  await c.remove();
  await assertRemoved(c);
});

test('the sleeper exits 0 on SIGTERM as PID 1', async (t) => {
  if (!ready(t)) return;
  const c = await start();
  await execa('runc', ['kill', c.id, 'TERM']);
  for (let i = 0; i < 200 && (await running(c.pid)); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(!(await running(c.pid)), 'sleeper ignored SIGTERM');
  assert.equal((await runcState(c.id)).status, 'stopped');
  await c.remove();
  await assertRemoved(c);
});

test('user namespace variant maps root to 100000', async (t) => {
  if (!ready(t)) return;
  const t0 = performance.now();
  const c = await start({ userns: { hostUid: 100000, hostGid: 100000, size: 65536 }, busybox: true });
  t.diagnostic(`start with userns ${(performance.now() - t0).toFixed(0)} ms`);
  const norm = (s: string) => s.trim().split(/\s+/).join(' ');
  assert.equal(norm(await readFile(`/proc/${c.pid}/uid_map`, 'utf8')), '0 100000 65536');
  assert.equal(norm(await readFile(`/proc/${c.pid}/gid_map`, 'utf8')), '0 100000 65536');
  assert.notEqual(await readlink(`/proc/${c.pid}/ns/user`), await readlink('/proc/self/ns/user'));
  const st = await stat(join(c.rootfs, 'bin/sleeper'));
  assert.deepEqual([st.uid, st.gid], [100000, 100000]);
  assert.ok(rootMount(await readFile(`/proc/${c.pid}/mountinfo`, 'utf8')).includes('ro'));
  // inside, the container's root owns its files
  const { stdout } = await execa('runc', ['exec', c.id, '/bin/busybox', 'stat', '-c', '%u:%g', '/bin/sleeper'], { stdin: 'ignore' });
  assert.equal(stdout, '0:0');
  await c.remove();
  await assertRemoved(c);
});

test('a private runc root keeps the container out of the default list', async (t) => {
  if (!ready(t)) return;
  const runcRoot = join(baseDir, 'runc-root');
  const c = await start({ runcRoot });
  assert.deepEqual(await runcIds(runcRoot), [c.id]);
  assert.ok(!(await runcIds()).includes(c.id));
  await c.remove();
  await assertRemoved(c, runcRoot);
});

test('a failed start leaves nothing behind', async (t) => {
  if (!ready(t)) return;
  const id = `crashcart-fail-${process.pid}`;
  const bundlesBefore = await readdir(baseDir);
  await assert.rejects(start({ id, args: ['/bin/missing'] }), /runc run .* failed/);
  assert.deepEqual(await readdir(baseDir), bundlesBefore);
  assert.ok(!(await runcIds()).includes(id));
});

test('an id in use is refused and the existing container survives', async (t) => {
  if (!ready(t)) return;
  const c = await start();
  const bundlesBefore = await readdir(baseDir);
  await assert.rejects(start({ id: c.id }), /already exists/);
  assert.deepEqual(await readdir(baseDir), bundlesBefore);
  assert.equal((await runcState(c.id)).status, 'running');
  await c.remove();
  await assertRemoved(c);
});

test('remove() ends an init that runc no longer knows about', async (t) => {
  if (!ready(t)) return;
  const runcRoot = join(baseDir, 'runc-root-lost');
  const c = await start({ runcRoot });
  // where runc put its cgroups (hybrid layout: v1 controllers plus unified)
  const cgroupDirs = (await readFile(`/proc/${c.pid}/cgroup`, 'utf8')).split('\n')
    .map((l) => l.split(':'))
    .filter(([, , path]) => path?.endsWith(`/${c.id}`))
    .map(([, ctls, path]) => `/sys/fs/cgroup/${ctls === '' ? 'unified' : ctls.split(',')[0].replace('name=', '')}${path}`)
    .filter((d) => existsSync(d));
  assert.ok(cgroupDirs.length > 0, 'found the container cgroups');
  // simulate lost runc state: delete -f then does nothing, so remove() must kill by PID
  await rm(join(runcRoot, c.id), { recursive: true, force: true });
  const t0 = performance.now();
  await c.remove();
  t.diagnostic(`remove with lost state ${(performance.now() - t0).toFixed(0)} ms`);
  assert.ok(!(await running(c.pid)));
  assert.ok(!existsSync(c.bundleDir));
  // runc can no longer remove those cgroups: remove() must have done it
  assert.deepEqual(cgroupDirs.filter((d) => existsSync(d)), []);
});

test('leak checks see nothing after a clean cycle and notice a changed target', async (t) => {
  if (!ready(t)) return;
  const c = await start();
  const target = { pid: c.pid, rootfs: c.rootfs };
  const s1: HostSnapshot = await snapshotHost(target);
  assert.ok(s1.target && s1.target.dev.some((l) => l.startsWith('null c ')), 'container /dev read');
  assert.ok(s1.target.rootfs.some((l) => l.startsWith('bin/sleeper f 755 ')));
  assertNoLeaks(s1, await snapshotHost(target));

  await writeFile(join(c.rootfs, 'etc/planted'), 'x');
  const s2 = await snapshotHost(target);
  assert.throws(() => assertNoLeaks(s1, s2), /target rootfs entry new or changed: etc\/planted/);
  await c.remove();
  // a vanished target is reported, not silently accepted
  const gone: HostSnapshot = { ...s1, target: { ...s1.target, dev: ['<unreadable>'] } };
  assert.throws(() => assertNoLeaks(s1, gone), /gone from target \/dev/);
});

test('assertNoLeaks reports new loop devices and mounts', () => {
  const base: HostSnapshot = { loops: ['loop0 /a.img'], mounts: ['0:5 / /dev/crashcart ro - ext3 /dev/loop0 ro'] };
  assertNoLeaks(base, { loops: [], mounts: [] });
  assert.throws(() => assertNoLeaks(base, { ...base, loops: ['loop0 /a.img', 'loop1 /b.img'] }), /new loop device: loop1 \/b.img/);
  assert.throws(() => assertNoLeaks(base, { ...base, mounts: [...base.mounts, ...base.mounts] }), /new host mount/);
});
