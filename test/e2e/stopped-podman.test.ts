// --stopped on a real podman container that crashed (a private podman: overlay, one named
// volume and one bind mount, runc) and --from-image on a podman image.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { CRASHY, withCrashyTar } from '../helpers/crashy.js';
import { assertClean, snapshot } from '../helpers/expect.js';
import { onPath, requireCommand, requireRoot } from '../helpers/host.js';
import { startPodman, ULIMITS, type PrivatePodman } from '../helpers/podman.js';
import { checkStopped } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';

const IMAGE_TAG = 'localhost/crashy-image:latest';

interface Inspect {
  State: { Status: string; FinishedAt: string };
  GraphDriver: { Name: string; Data: { LowerDir?: string; UpperDir?: string } };
  Mounts: { Source: string; Destination: string }[];
}

describe('--stopped with podman', () => {
  let p: PrivatePodman | undefined;
  let image = '';
  let setupError: unknown;

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'podman') || !requireCommand(t, 'runc')) return false;
    if (setupError) throw setupError;
    return p !== undefined;
  };

  async function podman(args: string[]): Promise<string> {
    const r = await p!.podman(args);
    assert.equal(r.code, 0, `podman ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !(onPath('podman') && onPath('runc'))) return;
    try {
      image = await testImage();
      p = await startPodman();
      await withCrashyTar(p.dir, async (tar) => podman(['import', tar, IMAGE_TAG]));
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    if (!p) return;
    await stopAndCheck(p, 'conmon');
  });

  test('a crashed container: its volume, its bind, its files, exited 3, all unchanged after', async (t) => {
    if (!ready(t)) return;
    const name = `crashy-${randomBytes(3).toString('hex')}`;
    const bind = join(p!.dir, `bind-${name}`);
    await mkdir(bind);
    await writeFile(join(bind, 'f'), 'bind data\n');
    await podman(['run', '-d', ...ULIMITS, '--name', name, '--hostname', CRASHY.hostname, '-u', `${CRASHY.uid}:${CRASHY.gid}`, '-w', CRASHY.cwd,
      '-e', 'CRASHY=1', '-v', `vol-${name}:/data`, '-v', `${bind}:/bind:ro`, IMAGE_TAG, ...CRASHY.entrypoint]);
    const i = await waitFor(`podman container ${name} exited`, async () => {
      const [x] = JSON.parse(await podman(['container', 'inspect', name])) as Inspect[];
      return x!.State.Status === 'exited' && x;
    });
    assert.equal(i.GraphDriver.Name, 'overlay');
    const layers = [i.GraphDriver.Data.UpperDir!, ...(i.GraphDriver.Data.LowerDir ?? '').split(':').filter(Boolean)];
    const unchanged = Object.fromEntries([...layers.map((l, n) => [`layer ${n}`, l]), ...i.Mounts.map((m) => [m.Destination, m.Source])]);
    await checkStopped({
      args: ['--stopped', name],
      env: p!.env,
      image,
      unchanged,
      firstLine: new RegExp(`^crashcart: ${name} exited 3 at \\S+Z \\(OOM-killed: no\\); its files are opened in a sandbox: changes are thrown away, none of its processes run, network: loopback only$`),
      also: { script: 'cat /data/note /bind/f /etc/hostname', lines: [`note from ${CRASHY.uid}`, 'bind data', CRASHY.hostname] },
    });
  });

  test('--from-image: a podman image from its local layers', async (t) => {
    if (!ready(t)) return;
    const host = await snapshot();
    const r = await runCrashcart(['-i', image, '--from-image', IMAGE_TAG, '--runtime', 'podman', 'sh', '-c', 'head -1 /app/crash.sh; hostname'], { env: p!.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n')[0], '#!/bin/sh');
    assert.match(r.stderr, new RegExp(`^crashcart: image ${IMAGE_TAG} \\(podman, [0-9a-f]{12}\\) is opened in a sandbox: changes are thrown away, network: loopback only$`));
    await assertClean(host);
  });
});
