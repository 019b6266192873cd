// Builds real static images (as root, with the host's apt) and inspects them with debugfs,
// without mounting anything.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { sha256File } from '../../src/image/apt.js';
import { buildImage } from '../../src/image/build.js';
import { defaultImagePath, readSidecar, resolveImage } from '../../src/image/cache.js';
import { checkExt3 } from '../../src/image/ext3.js';
import { projectRoot, requireCommand, requireRoot } from '../helpers/host.js';
import { until } from '../helpers/wait.js';

const TOOLS = ['apt-get', 'apt-cache', 'dpkg', 'mke2fs', 'debugfs', 'e2fsck', 'chroot'];

function ready(t: TestContext): boolean {
  return requireRoot(t) && TOOLS.every((name) => requireCommand(t, name));
}

/** A temp dir removed after the test, and the cache pointed into it for the test's length. */
async function sandbox(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-e2e-image-'));
  const saved = process.env.CRASHCART_CACHE_DIR;
  process.env.CRASHCART_CACHE_DIR = join(dir, 'cache');
  t.after(async () => {
    if (saved === undefined) delete process.env.CRASHCART_CACHE_DIR;
    else process.env.CRASHCART_CACHE_DIR = saved;
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

// .deb files downloaded by the first test, kept so later ones need not fetch them again
let sharedDebs: string | undefined;

async function keepDebs(from: string): Promise<void> {
  sharedDebs = mkdtempSync(join(tmpdir(), 'crashcart-e2e-debs-'));
  process.once('exit', () => rmSync(sharedDebs!, { recursive: true, force: true }));
  for (const f of await readdir(from)) if (f.endsWith('.deb')) await copyFile(join(from, f), join(sharedDebs, f));
}

async function seedDebs(cache: string): Promise<void> {
  await mkdir(join(cache, 'debs'), { recursive: true, mode: 0o700 });
  await chmod(cache, 0o700);
  if (!sharedDebs) return;
  for (const f of await readdir(sharedDebs)) {
    if (f.endsWith('.deb')) await copyFile(join(sharedDebs, f), join(cache, 'debs', f));
  }
}

async function debugfs(image: string, request: string): Promise<string> {
  const { stdout } = await execa('debugfs', ['-R', request, image], { stdin: 'ignore', env: { LC_ALL: 'C' } });
  return stdout;
}

/** name -> octal mode of a directory's entries, from `ls -p` (/ino/mode/uid/gid/name/size/). */
async function listing(image: string, dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const line of (await debugfs(image, `ls -p ${dir}`)).split('\n')) {
    const f = line.split('/');
    if (f.length >= 7 && f[5] !== '.' && f[5] !== '..') out.set(f[5]!, f[2]!);
  }
  return out;
}

async function linkTarget(image: string, path: string): Promise<string | undefined> {
  return /Fast link dest: "(.*)"/.exec(await debugfs(image, `stat ${path}`))?.[1];
}

async function stagingDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((n) => n.startsWith('crashcart-staging-'));
}

test('builds a static image, byte-identical on a rebuild, leaving nothing behind', async (t) => {
  if (!ready(t)) return;
  const dir = await sandbox(t);
  const out = join(dir, 'out');
  await mkdir(out);
  const stagingBefore = await stagingDirs();

  const cold: string[] = [];
  let t0 = Date.now();
  const a = await buildImage({ profile: 'static', output: join(out, 'a.img'), progress: (l) => cold.push(l) });
  const coldMs = Date.now() - t0;
  const warm: string[] = [];
  t0 = Date.now();
  const b = await buildImage({ profile: 'static', output: join(out, 'b.img'), progress: (l) => warm.push(l) });
  const warmMs = Date.now() - t0;
  t.diagnostic(`cold ${coldMs} ms, warm ${warmMs} ms, ${(a.sizeBytes / 1048576).toFixed(1)} MiB, sha256 ${a.sha256}`);
  await keepDebs(join(dir, 'cache', 'debs'));

  assert.ok(cold.some((l) => /^writing ext3 image \(\d+\.\d MiB, \d+ tools\)$/.test(l)), cold.join('\n'));
  assert.ok(warm.some((l) => l.startsWith('using unpacked busybox-static ')), warm.join('\n'));
  assert.ok(!warm.some((l) => l.startsWith('downloading ')), warm.join('\n'));
  assert.equal(b.sha256, a.sha256, 'same inputs must give the same image');
  assert.equal(await sha256File(a.path), a.sha256);
  assert.equal((await stat(a.path)).size, a.sizeBytes);
  assert.deepEqual(a.packages.map((p) => p.name), ['busybox-static', 'bash-static']);

  const img = a.path;
  await checkExt3(img);
  assert.match(await execa('dumpe2fs', ['-h', img], { env: { LC_ALL: 'C' } }).then((r) => r.stdout), /Filesystem volume name:\s+crashcart\n[\s\S]*features:.*has_journal/);
  const bin = await listing(img, '/bin');
  assert.equal(bin.get('bash'), '100755');
  assert.equal(bin.get('busybox'), '100755');
  assert.equal(bin.get('ls'), '120777');
  assert.equal(await linkTarget(img, '/bin/ls'), 'busybox');
  assert.equal(await linkTarget(img, '/bin/sh'), 'bash');
  assert.equal(await linkTarget(img, '/r'), 'etc/bashrc');
  assert.equal(await linkTarget(img, '/logout'), 'etc/bash_logout');
  assert.equal(await debugfs(img, 'cat /etc/bashrc'), (await readFile(join(projectRoot(), 'images/static/bashrc'), 'utf8')).replace(/\n$/, ''));

  const manifest = JSON.parse(await debugfs(img, 'cat /MANIFEST.json'));
  assert.equal(manifest.profile, 'static');
  assert.deepEqual(manifest.packages, a.packages);
  assert.equal(manifest.built, '2023-11-14T22:13:20.000Z');
  assert.deepEqual(manifest.tools, [...bin.keys()].sort());
  for (const tool of ['bash', 'busybox', 'ls', 'sh', 'ps', 'nsenter']) assert.ok(manifest.tools.includes(tool), tool);

  const bash = join(dir, 'bash');
  await debugfs(img, `dump /bin/bash ${bash}`);
  const bytes = await readFile(bash);
  assert.equal(bytes.indexOf('/etc/bash.bashrc'), -1, 'bash still reads the container bashrc');
  assert.equal(bytes.indexOf('/etc/bash.bash_logout'), -1);
  assert.notEqual(bytes.indexOf('/dev/crashcart/r\0'), -1);

  // another source date gives another image: the date is what varies, nothing else does
  const c = await buildImage({ profile: 'static', output: join(out, 'c.img'), sourceDateEpoch: 1600000000 });
  assert.notEqual(c.sha256, a.sha256);
  assert.equal(JSON.parse(await debugfs(c.path, 'cat /MANIFEST.json')).built, '2020-09-13T12:26:40.000Z');

  assert.deepEqual((await readdir(out)).sort(), ['a.img', 'b.img', 'c.img']);
  // .deb files and their unpacked trees, nothing left from a download or an unpacking
  assert.deepEqual((await readdir(join(dir, 'cache', 'debs'))).filter((n) => !n.endsWith('.deb')), ['.unpacked']);
  assert.deepEqual((await readdir(join(dir, 'cache', 'debs', '.unpacked'))).filter((n) => !/^[0-9a-f]{64}$/.test(n)), []);
  assert.deepEqual(await stagingDirs(), stagingBefore);
  assert.equal((await stat(join(dir, 'cache'))).mode & 0o777, 0o700);
});

test('the toolkit shell ignores the container bashrc and writes no history', async (t) => {
  if (!ready(t)) return;
  const dir = await sandbox(t);
  await seedDebs(join(dir, 'cache'));
  const img = join(dir, 'tk.img');
  await buildImage({ profile: 'static', output: img });

  // a fake container root with the image's contents at /dev/crashcart
  const root = join(dir, 'root');
  await mkdir(join(root, 'dev', 'crashcart'), { recursive: true });
  await mkdir(join(root, 'etc'));
  await mkdir(join(root, 'root'));
  await writeFile(join(root, 'etc', 'bash.bashrc'), 'echo CONTAINER-BASHRC\n');
  await writeFile(join(root, 'root', '.bashrc'), 'echo CONTAINER-USER-BASHRC\n');
  await debugfs(img, `rdump / ${join(root, 'dev', 'crashcart')}`);

  const script = 'echo "P=$PATH"; echo "L=$(command -v ls)"; echo "H=${HISTFILE-unset}"; echo "S=$SHELL"; echo "X=$(ls /dev/crashcart/bin/bash)"; exit\n';
  // the command is looked up with our PATH, the shell gets a container-like one
  const chroot = (await execa('sh', ['-c', 'command -v chroot'])).stdout;
  const r = await execa(chroot, [root, '/dev/crashcart/bin/bash', '--rcfile', '/dev/crashcart/etc/bashrc', '-i'], {
    input: script,
    env: { PATH: '/usr/bin:/bin', HOME: '/root', TERM: 'dumb', LD_LIBRARY_PATH: '/nowhere' },
    extendEnv: false,
    reject: false,
  });
  assert.equal(r.exitCode, 0, r.message);
  assert.doesNotMatch(r.stdout + r.stderr, /CONTAINER-/);
  assert.match(r.stdout, /^P=\/dev\/crashcart\/bin:\/usr\/bin:\/bin$/m);
  assert.match(r.stdout, /^L=\/dev\/crashcart\/bin\/ls$/m);
  assert.match(r.stdout, /^H=unset$/m);
  assert.match(r.stdout, /^S=\/dev\/crashcart\/bin\/bash$/m);
  assert.match(r.stdout, /^X=\/dev\/crashcart\/bin\/bash$/m);
  assert.match(r.stderr, /\[crashcart [^ ]+ \/\]# /);
  assert.deepEqual(await readdir(join(root, 'root')), ['.bashrc']);
});

test('resolveImage builds the default (full) image on first use, then reuses it', async (t) => {
  if (!ready(t)) return;
  const dir = await sandbox(t);
  await seedDebs(join(dir, 'cache'));
  const path = defaultImagePath();
  assert.equal(path, join(dir, 'cache', 'images', 'full.img'));

  // two concurrent first uses: both build, both rename a complete identical file
  const lines: string[] = [];
  const [first, second] = await Promise.all([resolveImage({ progress: (l) => lines.push(l) }), resolveImage()]);
  assert.deepEqual(first, { path, built: true });
  assert.deepEqual(second, { path, built: true });
  assert.equal(lines[0], `no toolkit image yet; building ${path}`);
  assert.deepEqual((await readdir(join(dir, 'cache', 'images'))).sort(), ['full.img', 'full.img.json']);
  assert.equal((await stat(join(dir, 'cache', 'images'))).mode & 0o777, 0o700);

  const sidecar = await readSidecar(path);
  assert.equal(sidecar?.sha256, await sha256File(path));
  assert.equal(sidecar?.profile, 'full');
  assert.ok(sidecar?.packages?.some((p) => p.name === 'gdb-minimal'));
  assert.match(sidecar?.recipe ?? '', /^[0-9a-f]{64}$/);
  assert.match(sidecar?.built ?? '', /^\d{4}-\d\d-\d\dT/);

  assert.deepEqual(await resolveImage(), { path, built: false });

  // an image made from another recipe (an older crashcart) is rebuilt
  await writeFile(`${path}.json`, JSON.stringify({ ...sidecar, recipe: 'old' }));
  const again: string[] = [];
  assert.deepEqual(await resolveImage({ progress: (l) => again.push(l) }), { path, built: true });
  assert.equal(again[0], `cached image was made by another crashcart version; building ${path}`);

  // a damaged one too
  await writeFile(path, Buffer.alloc(4096));
  assert.deepEqual(await resolveImage(), { path, built: true });
  await checkExt3(path);
});

test('a failing build leaves nothing behind', async (t) => {
  if (!ready(t)) return;
  const dir = await sandbox(t);
  await seedDebs(join(dir, 'cache'));
  const fake = join(dir, 'fakebin');
  await mkdir(fake);
  await writeFile(join(fake, 'mke2fs'), '#!/bin/sh\necho "mke2fs: simulated failure" >&2\nexit 1\n', { mode: 0o755 });
  const savedPath = process.env.PATH;
  process.env.PATH = `${fake}:${savedPath}`;
  t.after(() => {
    process.env.PATH = savedPath;
  });
  const out = join(dir, 'out');
  await mkdir(out);
  const stagingBefore = await stagingDirs();
  await assert.rejects(buildImage({ profile: 'static', output: join(out, 'x.img') }), {
    code: 'EBUILD',
    message: new RegExp(`^mke2fs ${out}/x\\.img\\.\\d+\\.[0-9a-f]+\\.tmp failed: mke2fs: simulated failure$`),
  });
  assert.deepEqual(await readdir(out), []);
  assert.deepEqual(await stagingDirs(), stagingBefore);
});

test('without package lists the error says to run apt-get update', async (t) => {
  if (!ready(t)) return;
  const dir = await sandbox(t);
  // a fresh machine: no package lists, nothing installed
  await mkdir(join(dir, 'lists', 'partial'), { recursive: true });
  await writeFile(join(dir, 'status'), '');
  await writeFile(join(dir, 'apt.conf'), `Dir::State::Lists "${dir}/lists";\nDir::State::status "${dir}/status";\n`);
  const saved = process.env.APT_CONFIG;
  process.env.APT_CONFIG = join(dir, 'apt.conf');
  t.after(() => {
    if (saved === undefined) delete process.env.APT_CONFIG;
    else process.env.APT_CONFIG = saved;
  });
  const out = join(dir, 'out');
  await mkdir(out);
  await assert.rejects(buildImage({ profile: 'static', output: join(out, 'x.img') }), {
    code: 'EBUILD',
    name: 'CrashcartError',
    message: 'apt-get download busybox-static failed: No packages found',
    hint: "run 'apt-get update' first",
  });
  assert.deepEqual(await readdir(out), []);
});

test('an interrupted build keeps nothing, and temporaries of a dead build are swept', async (t) => {
  if (!ready(t)) return;
  const dir = await sandbox(t);
  await seedDebs(join(dir, 'cache'));
  const out = join(dir, 'out');
  await mkdir(out);
  // What a build killed with SIGKILL leaves: a pid that no longer runs.
  const gone = execa('true');
  const dead = gone.pid!;
  await gone;
  await mkdir(join(out, `.crashcart-staging-${dead}-x1y2z3`));
  await writeFile(join(out, `static.img.${dead}.0a1b2c3d.tmp`), 'partial');

  const cli = join(projectRoot(), 'bin', 'crashcart');
  const child = execa(process.execPath, [cli, 'image', 'build', '--profile', 'static', '-o', join(out, 'static.img')], {
    reject: false,
    stdin: 'ignore',
    env: { CRASHCART_CACHE_DIR: join(dir, 'cache') },
  });
  // Interrupt once its own staging directory exists (the dead one is swept first).
  const mine = new RegExp(`^\\.crashcart-staging-${child.pid}-`);
  const staging = await until(async () => (await readdir(out)).some((n) => mine.test(n)), { ms: 30_000, every: 5 });
  assert.ok(staging, 'the build started staging');
  assert.ok(!(await readdir(out)).some((n) => n.includes(`-${dead}-`) || n.includes(`.${dead}.`)), 'dead temporaries swept');
  child.kill('SIGINT');
  const r = await child;
  assert.equal(r.exitCode, 125, r.stderr);
  assert.equal(r.stderr, 'crashcart: image build interrupted by SIGINT; nothing was kept');
  assert.deepEqual(await readdir(out), []);
});
