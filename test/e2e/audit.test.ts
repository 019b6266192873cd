// The audit log: every attach, mount, unmount and gc appends one JSON line to a root-only
// file; --no-audit leaves only the fact that a run went unrecorded; a log that cannot be
// written (a directory someone else owns, a symlink planted in its place) is a warning and
// never fails the session.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { privateDirs, runCrashcart } from '../helpers/cli.js';
import { requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, snapshot } from '../helpers/expect.js';

const BASE = `ccaudit-${randomBytes(3).toString('hex')}`;

describe('audit log', () => {
  let c: ScratchContainer | undefined;
  let scratch = '';
  let sha256 = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    scratch = mkdtempSync(join(tmpdir(), 'crashcart-audit-'));
    // a cached image has a record with its digest: the log names it without hashing the file
    const built = await runCrashcart(['image', 'build', '--profile', 'static'], { timeout: 600_000 });
    assert.equal(built.code, 0, built.stderr);
    sha256 = JSON.parse(readFileSync(join(privateDirs().cache, 'images', 'static.img.json'), 'utf8')).sha256;
    c = await createScratchContainer({ id: `${BASE}-a`, sleeperPath: await sleeperPath(), busybox: true });
  });
  after(async () => {
    await c?.remove();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  const ready = (t: TestContext) => requireRoot(t) && requireCommand(t, 'runc');
  const log = () => privateDirs().audit;
  const entries = () => (existsSync(log()) ? readFileSync(log(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []);

  test('an attach: who, where, what, with which result, and how long', async (t) => {
    if (!ready(t)) return;
    const before = await snapshot(c);
    const n = entries().length;
    const r = await runCrashcart(['-i', 'static', c!.id, '--', 'sh', '-c', 'exit 3'], { env: { SUDO_USER: 'alice', SUDO_UID: '1000' } });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stderr, '');
    const [e, ...more] = entries().slice(n);
    assert.deepEqual(more, []);
    assert.equal(e!.event, 'attach');
    assert.equal(e!.uid, 0);
    assert.equal(e!.sudoUser, 'alice');
    assert.equal(e!.sudoUid, 1000);
    assert.deepEqual(e!.target, { runtime: 'runc', id: c!.id, pid: c!.pid });
    assert.deepEqual(e!.image, { path: join(privateDirs().cache, 'images', 'static.img'), sha256 });
    assert.deepEqual(e!.command, ['sh', '-c', 'exit 3']);
    assert.equal(e!.method, 'mknod');
    assert.equal(e!.exitCode, 3);
    assert.equal(e!.signal, null);
    assert.ok(typeof e!.durationMs === 'number' && e!.durationMs > 0);
    assert.ok(!Number.isNaN(Date.parse(String(e!.time))));
    // root's alone
    assert.equal(statSync(log()).mode & 0o777, 0o600);
    assert.equal(statSync(join(privateDirs().root, 'log')).mode & 0o777, 0o700);
    await assertClean(before, c);
  });

  test('a command killed by a signal, a failure of crashcart, mount, unmount and gc', async (t) => {
    if (!ready(t)) return;
    const before = await snapshot(c);
    const n = entries().length;
    assert.equal((await runCrashcart(['-i', 'static', c!.id, '--', 'sh', '-c', 'kill -9 $$'])).code, 137);
    assert.equal((await runCrashcart(['-i', 'static', c!.id, '--', 'no-such-tool'])).code, 127);
    assert.equal((await runCrashcart(['-i', 'static', '-m', c!.id])).code, 0);
    assert.equal((await runCrashcart(['-u', c!.id])).code, 0);
    assert.equal((await runCrashcart(['gc'])).code, 0);
    const got = entries().slice(n).map((e) => [e.event, e.exitCode, e.signal ?? null]);
    assert.deepEqual(got, [['attach', 137, 9], ['attach', 127, null], ['mount', 0, null], ['unmount', 0, null], ['gc', 0, null]]);
    await assertClean(before, c);
  });

  test('--no-audit: only the fact that a run went unrecorded', async (t) => {
    if (!ready(t)) return;
    const n = entries().length;
    const r = await runCrashcart(['-i', 'static', '--no-audit', c!.id, '--', 'cat', '/proc/1/comm']);
    assert.equal(r.code, 0, r.stderr);
    const [e] = entries().slice(n);
    assert.deepEqual(Object.keys(e!).sort(), ['event', 'noAudit', 'sudoUid', 'sudoUser', 'time', 'uid']);
    assert.equal(e!.noAudit, true);
  });

  test('a log that cannot be written is a warning: the session still runs, and nothing is followed', async (t) => {
    if (!ready(t)) return;
    const before = await snapshot(c);
    // a directory that another user owns
    const theirs = join(scratch, 'theirs');
    mkdirSync(theirs, { mode: 0o755 });
    chownSync(theirs, 65534, 65534);
    const r = await runCrashcart(['-i', 'static', c!.id, '--', 'cat', '/proc/1/comm'], { env: { CRASHCART_AUDIT_LOG: join(theirs, 'audit.log') } });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'sleeper');
    assert.equal(r.stderr, `crashcart: warning: audit log directory ${theirs}: it is owned by uid 65534, not root`);
    assert.ok(!existsSync(join(theirs, 'audit.log')));
    // a symlink where the log goes, pointing at a file that must not grow
    const dir = join(scratch, 'ours');
    mkdirSync(dir, { mode: 0o700 });
    const victim = join(scratch, 'victim');
    writeFileSync(victim, 'untouched\n');
    symlinkSync(victim, join(dir, 'audit.log'));
    const s = await runCrashcart(['-i', 'static', c!.id, '--', 'true'], { env: { CRASHCART_AUDIT_LOG: join(dir, 'audit.log') } });
    assert.equal(s.code, 0);
    assert.match(s.stderr, new RegExp(`^crashcart: warning: cannot write the audit log ${join(dir, 'audit.log')}: ELOOP`));
    assert.equal(readFileSync(victim, 'utf8'), 'untouched\n');
    assert.ok(lstatSync(join(dir, 'audit.log')).isSymbolicLink());
    await assertClean(before, c);
  });
});
