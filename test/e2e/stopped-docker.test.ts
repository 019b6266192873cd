// --stopped on a real docker container that crashed (a private dockerd: overlay2, one named
// volume and one bind mount), --from-image on a docker image, and a container of a storage
// driver crashcart does not open (a second private dockerd with vfs); crashcart cp out of a
// crashed one.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { CRASHY, digests, withCrashyTar } from '../helpers/crashy.js';
import { startDockerd, type PrivateDockerd } from '../helpers/dockerd.js';
import { assertClean, assertFailure, snapshot } from '../helpers/expect.js';
import { onPath, requireCommand, requireRoot } from '../helpers/host.js';
import { checkStopped } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';

const IMAGE_TAG = 'crashy-image:latest';

interface Inspect {
  Id: string;
  State: { Status: string; ExitCode: number; FinishedAt: string; OOMKilled: boolean };
  GraphDriver: { Name: string; Data: { LowerDir?: string; UpperDir?: string } };
  Mounts: { Type: string; Source: string; Destination: string }[];
}

/** Imports the crashy root, runs it with a named volume at /data and a bind at /bind, and waits until it has exited. */
async function crashed(d: PrivateDockerd, name: string, extra: string[] = []): Promise<Inspect> {
  const docker = async (args: string[]) => {
    const r = await d.docker(args);
    assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  if ((await d.docker(['image', 'inspect', IMAGE_TAG])).code !== 0) {
    await withCrashyTar(d.dir, async (tar) => docker(['import', tar, IMAGE_TAG]));
  }
  const bind = join(d.dir, `bind-${name}`);
  await mkdir(bind);
  await writeFile(join(bind, 'f'), 'bind data\n');
  await docker(['run', '-d', '--name', name, '--network', 'none', '--hostname', CRASHY.hostname, '-u', `${CRASHY.uid}:${CRASHY.gid}`, '-w', CRASHY.cwd,
    '-e', 'CRASHY=1', '-v', `vol-${name}:/data`, '-v', `${bind}:/bind:ro`, ...extra, IMAGE_TAG, ...CRASHY.entrypoint]);
  return waitFor(`docker container ${name} exited`, async () => {
    const [i] = JSON.parse(await docker(['inspect', '--type', 'container', name])) as Inspect[];
    return i!.State.Status === 'exited' && i;
  });
}

describe('--stopped with docker', () => {
  let d: PrivateDockerd | undefined;
  let image = '';
  let setupError: unknown;

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd') || !requireCommand(t, 'docker')) return false;
    if (setupError) throw setupError;
    return d !== undefined;
  };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !onPath('dockerd')) return;
    try {
      image = await testImage();
      d = await startDockerd();
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    if (!d) return;
    const ids = (await d.docker(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await d.docker(['rm', '-f', ...ids]);
    await d.docker(['volume', 'prune', '-f']);
    await stopAndCheck(d, 'dockerd or containerd');
  });

  test('a crashed container: its volume, its bind, its files, exited 3, all unchanged after', async (t) => {
    if (!ready(t)) return;
    const name = `crashy-${randomBytes(3).toString('hex')}`;
    const i = await crashed(d!, name);
    assert.equal(i.GraphDriver.Name, 'overlay2');
    const layers = [i.GraphDriver.Data.UpperDir!, ...i.GraphDriver.Data.LowerDir!.split(':')];
    const unchanged = Object.fromEntries([...layers.map((l, n) => [`layer ${n}`, l]), ...i.Mounts.map((m) => [m.Destination, m.Source])]);
    assert.equal(Object.keys(unchanged).length, layers.length + 2);
    await checkStopped({
      args: ['--stopped', name],
      env: d!.env,
      image,
      unchanged,
      firstLine: `crashcart: ${name} exited 3 at ${i.State.FinishedAt.replace(/\.[0-9]+Z$/, 'Z')} (OOM-killed: no); its files are opened in a sandbox: ` +
        'changes are thrown away, none of its processes run, network: loopback only',
      also: { script: 'cat /data/note /bind/f /etc/hostname; grep -c " /data ro," /proc/self/mountinfo', lines: [`note from ${CRASHY.uid}`, 'bind data', CRASHY.hostname, '1'] },
    });
    const ps = await runCrashcart(['ps', '-a', '--json', '--runtime', 'docker'], { env: d!.env });
    assert.equal(ps.code, 0, ps.stderr);
    const row = (JSON.parse(ps.stdout) as Record<string, unknown>[]).find((x) => x.id === i.Id);
    assert.deepEqual([row?.status, row?.exitCode, row?.finishedAt, row?.opens], ['exited', 3, i.State.FinishedAt, true]);
  });

  test('crashcart cp out of a crashed container: its last words, its named volume and its bind; into it refused; all unchanged after', async (t) => {
    if (!ready(t)) return;
    const name = `crashy-${randomBytes(3).toString('hex')}`;
    const i = await crashed(d!, name);
    const layers = [i.GraphDriver.Data.UpperDir!, ...i.GraphDriver.Data.LowerDir!.split(':')];
    const unchanged = Object.fromEntries([...layers.map((l, n) => [`layer ${n}`, l]), ...i.Mounts.map((m) => [m.Destination, m.Source])]);
    const before = await digests(unchanged);
    const out = await mkdtemp(join(d!.dir, 'cp-out-'));
    const host = await snapshot();
    const env = d!.env;
    const ok = (r: { code: number | null | undefined; stderr: string }) => assert.deepEqual([r.code, r.stderr], [0, '']);
    ok(await runCrashcart(['cp', `${name}:/tmp/last-words`, out], { env }));
    ok(await runCrashcart(['cp', `${name}:/data`, out], { env }));
    ok(await runCrashcart(['cp', `${name}:/bind/f`, join(out, 'bind-f')], { env }));
    assert.equal(await readFile(join(out, 'last-words'), 'utf8'), CRASHY.lastWords);
    assert.equal(await readFile(join(out, 'data/note'), 'utf8'), `note from ${CRASHY.uid}\n`, 'its named volume, at /data');
    assert.equal(await readFile(join(out, 'bind-f'), 'utf8'), 'bind data\n');
    const w = await runCrashcart(['cp', join(out, 'bind-f'), `${name}:/tmp/`], { env });
    assertFailure(w, 125, `crashcart: cannot copy into ${name}: it is not running (status: exited), and its writable layer belongs to its runtime; ` +
      `start it first, copy out of it (crashcart cp ${name}:PATH DEST), or look at its files with crashcart --stopped ${name}`);
    assert.deepEqual(await digests(unchanged), before, "the container's layers and volumes are byte-identical");
    await assertClean(host);
  });

  test('--entrypoint after a command: the crash again, under the command', async (t) => {
    if (!ready(t)) return;
    const name = `crashy-${randomBytes(3).toString('hex')}`;
    await crashed(d!, name);
    const r = await runCrashcart(['-i', image, '--stopped', name, '--entrypoint', '--', 'env', 'CRASHY=traced'], { env: d!.env });
    assert.equal(r.code, CRASHY.exitCode, r.stderr);
    const words = await runCrashcart(['-i', image, '--stopped', name, '--entrypoint', '--', 'sh', '-c', '"$@"; echo "exit $?"; cat /tmp/last-words', 'sh'], { env: d!.env });
    assert.equal(words.code, 0, words.stderr);
    assert.deepEqual(words.stdout.split('\n'), [`exit ${CRASHY.exitCode}`, 'last words of crashy']);
  });

  test('--from-image: the image from its local layers, never run, with nothing written to it', async (t) => {
    if (!ready(t)) return;
    const host = await snapshot();
    const r = await runCrashcart(['-i', image, '--from-image', IMAGE_TAG, 'sh', '-c', 'head -1 /app/crash.sh; ls /tmp | wc -l; echo x > /app/x; id -u'], { env: d!.env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n'), ['#!/bin/sh', '0', '0']);
    const id = (await d!.docker(['image', 'inspect', '-f', '{{.Id}}', IMAGE_TAG])).stdout.trim().replace(/^sha256:/, '');
    assert.equal(r.stderr, `crashcart: image ${IMAGE_TAG} (docker, ${id.slice(0, 12)}) is opened in a sandbox: changes are thrown away, network: loopback only`);
    const missing = await runCrashcart(['-i', image, '--from-image', 'no-such:image', 'true'], { env: d!.env });
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /^crashcart: no image no-such:image here \(asked: docker(, podman)?\); crashcart opens local images only: pull it first \(docker pull, podman pull\)$/);
    await assertClean(host);
  });

  test('a removed container: one line, 125', async (t) => {
    if (!ready(t)) return;
    const name = `crashy-${randomBytes(3).toString('hex')}`;
    await crashed(d!, name);
    assert.equal((await d!.docker(['rm', name])).code, 0);
    const host = await snapshot();
    const r = await runCrashcart(['-i', image, '--runtime', 'docker', '--stopped', name, '--', 'true'], { env: d!.env });
    assertFailure(r, 125, `crashcart: no container matches '${name}' (asked: docker); a removed container's files are gone; see the containers there are with crashcart ps -a`);
    await assertClean(host);
  });

  test('a storage driver crashcart does not open (vfs): one line, 125', async (t) => {
    if (!ready(t)) return;
    const vfs = await startDockerd(['--storage-driver', 'vfs']);
    try {
      const name = `crashy-${randomBytes(3).toString('hex')}`;
      await crashed(vfs, name);
      const host = await snapshot();
      const r = await runCrashcart(['-i', image, '--runtime', 'docker', '--stopped', name, '--', 'true'], { env: vfs.env });
      const ps = await runCrashcart(['ps', '-a', '--json', '--runtime', 'docker'], { env: vfs.env });
      const row = (JSON.parse(ps.stdout) as Record<string, unknown>[]).find((x) => x.name === name);
      assert.deepEqual([row?.opens, row?.exitCode], [false, null]);
      assert.match(String(row?.why), /is stored by the vfs storage driver/);
      assertFailure(r, 125, `crashcart: docker container ${name} is stored by the vfs storage driver, which crashcart cannot open (it opens docker's overlay2 and overlay); ` +
        'export its files (docker export, podman export) into a directory and open that with --rootfs DIR');
      await assertClean(host);
    } finally {
      const ids = (await vfs.docker(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
      if (ids.length) await vfs.docker(['rm', '-f', ...ids]);
      await vfs.docker(['volume', 'prune', '-f']);
      await stopAndCheck(vfs, 'the vfs dockerd');
    }
  });
});
