// The image cache's names and digest prefixes, the trust rule for image files, and rm's
// loop-device check, against temporary directories (no network, no loop devices).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveImage } from '../../src/image/cache.js';
import { parseDigest } from '../../src/image/pull.js';
import { findCached, imageLabel, listImages, loopsBacking, removeImage, trustedImage, unsafeReason } from '../../src/image/store.js';
import { attachAdds, derivedImageName, loadProfile, recipeDigest } from '../../src/image/profile.js';
import { imageLsRows } from '../../src/cli/commands/image.js';
import { formatTable } from '../../src/cli/output.js';

const isRoot = process.getuid?.() === 0;

async function scratch(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-unit-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Points CRASHCART_CACHE_DIR into a fresh temp dir for the test's length; returns images/. */
async function cache(t: TestContext): Promise<string> {
  const dir = await scratch(t);
  const saved = process.env.CRASHCART_CACHE_DIR;
  process.env.CRASHCART_CACHE_DIR = join(dir, 'cache');
  t.after(() => {
    if (saved === undefined) delete process.env.CRASHCART_CACHE_DIR;
    else process.env.CRASHCART_CACHE_DIR = saved;
  });
  const images = join(dir, 'cache', 'images');
  await mkdir(images, { recursive: true, mode: 0o700 });
  await chmod(join(dir, 'cache'), 0o700);
  await chmod(images, 0o700);
  return images;
}

function fakeExt(size = 4096, o: { blocks?: number; compat?: number; incompat?: number } = {}): Buffer {
  const buf = Buffer.alloc(size);
  buf.writeUInt32LE(o.blocks ?? size / 1024, 1024 + 4); // s_blocks_count, 1 KiB blocks
  buf.writeUInt16LE(0xef53, 1024 + 56);
  buf.writeUInt32LE(o.compat ?? 0x4, 1024 + 92); // has_journal
  buf.writeUInt32LE(o.incompat ?? 0x2, 1024 + 96); // filetype
  return buf;
}

const A = `abcdef${'1'.repeat(58)}`;
const B = `abcdef${'2'.repeat(58)}`;
const S = `0123456789${'a'.repeat(54)}`;

async function fill(images: string): Promise<void> {
  await writeFile(join(images, 'static.img'), fakeExt());
  await writeFile(join(images, 'static.img.json'), JSON.stringify({ sha256: S, profile: 'static', built: '2026-01-02T03:04:05.000Z', sizeBytes: 4096 }));
  await writeFile(join(images, `sha256-${A}.img`), fakeExt());
  await writeFile(join(images, `sha256-${A}.img.json`), JSON.stringify({ sha256: A, source: 'http://h/a.img', pulled: '2026-02-02T00:00:00.000Z', sizeBytes: 4096 }));
  await writeFile(join(images, `sha256-${B}.img`), fakeExt()); // no sidecar: the digest comes from the name
  await writeFile(join(images, '.pull-1-abcd.tmp'), fakeExt()); // a pull in progress is never listed
}

test('listImages reads names, digests and sidecars; nothing when there is no cache', async (t) => {
  const images = await cache(t);
  await rm(images, { recursive: true });
  assert.deepEqual(await listImages(), []);
  await mkdir(images, { mode: 0o700 });
  await fill(images);
  const list = await listImages();
  assert.deepEqual(list.map((i) => [i.name, i.sha256, i.source, i.profile]), [
    [`sha256-${A}`, A, 'http://h/a.img', undefined],
    [`sha256-${B}`, B, undefined, undefined],
    ['static', S, undefined, 'static'],
  ]);
  assert.equal(list[0]!.date, '2026-02-02T00:00:00.000Z');
  assert.equal(list[2]!.date, '2026-01-02T03:04:05.000Z');
  assert.equal(list[0]!.sizeBytes, 4096);
});

test('findCached resolves cache names and unique digest prefixes', async (t) => {
  const images = await cache(t);
  await fill(images);
  assert.equal((await findCached('static'))?.path, join(images, 'static.img'));
  assert.equal((await findCached('static.img'))?.path, join(images, 'static.img'));
  assert.equal((await findCached(`sha256-${A}`))?.path, join(images, `sha256-${A}.img`));
  assert.equal((await findCached('0123456'))?.name, 'static');
  assert.equal((await findCached('abcdef1'))?.name, `sha256-${A}`);
  assert.equal((await findCached('sha256:ABCDEF2'))?.name, `sha256-${B}`);
  assert.equal((await findCached(A))?.name, `sha256-${A}`);
  assert.equal(await findCached('01234'), undefined, 'five digits are too few');
  assert.equal(await findCached('ffffff'), undefined);
  assert.equal(await findCached('./static'), undefined, 'a path is never a cache name');
  assert.equal(await findCached(join(images, 'static.img')), undefined);
  await assert.rejects(findCached('abcdef'), {
    code: 'EAMBIGUOUS',
    message: `image digest prefix abcdef matches 2 cached images: sha256-${A} (sha256:abcdef111111), sha256-${B} (sha256:abcdef222222)`,
    hint: 'give more digits',
  });
  // the same digest under two names is one image: the digest name wins
  await writeFile(join(images, 'copy.img'), fakeExt());
  await writeFile(join(images, 'copy.img.json'), JSON.stringify({ sha256: A }));
  assert.equal((await findCached('abcdef1'))?.name, `sha256-${A}`);
});

test('resolveImage takes a cache name, a digest prefix or a file', async (t) => {
  const images = await cache(t);
  await fill(images);
  assert.deepEqual(await resolveImage({ image: 'static' }), { path: join(images, 'static.img'), built: false });
  assert.deepEqual(await resolveImage({ image: 'abcdef2' }), { path: join(images, `sha256-${B}.img`), built: false });
  await assert.rejects(resolveImage({ image: 'abcdef' }), { code: 'EAMBIGUOUS' });
  const cwd = join(images, '..', '..');
  const file = join(cwd, 'mine.img');
  await writeFile(file, fakeExt());
  assert.deepEqual(await resolveImage({ image: file }), { path: file, built: false });
  await assert.rejects(resolveImage({ image: 'nothing-here' }), {
    code: 'ENOIMAGE',
    message: `image 'nothing-here' not found: no cached image of that name or digest and no file ${join(process.cwd(), 'nothing-here')}`,
    hint: "see 'crashcart image ls'",
  });
});

test('parseDigest takes 64 hex digits, with or without sha256:', () => {
  assert.equal(parseDigest(`sha256:${A.toUpperCase()}`), A);
  assert.equal(parseDigest(A), A);
  assert.equal(parseDigest(A.slice(1)), undefined);
  assert.equal(parseDigest(`${A}0`), undefined);
  assert.equal(parseDigest('xyz'), undefined);
});

test('trust rule: root-owned file and directories, sticky directories allowed', { skip: !isRoot && 'needs root (chown)' }, async (t) => {
  const dir = await scratch(t); // root's 0700 directory inside sticky /tmp
  const file = join(dir, 'ok.img');
  await writeFile(file, fakeExt());
  await chmod(file, 0o644);
  assert.deepEqual(await unsafeReason(file), { real: file });
  assert.equal(await trustedImage(file), file);

  await chmod(file, 0o664);
  await assert.rejects(trustedImage(file), {
    code: 'EUNSAFEIMAGE',
    message: `refusing image ${file}: it is writable by group or others (mode 664), so a non-root user could change what root mounts`,
    hint: 'make it and its directories root-owned and not writable by others, or pass --insecure-image to use it anyway',
  });
  await chmod(file, 0o646);
  assert.equal((await unsafeReason(file)).reason, 'it is writable by group or others (mode 646)');
  await chmod(file, 0o644);
  await chown(file, 65534, 65534);
  assert.equal((await unsafeReason(file)).reason, 'it is owned by uid 65534, not root');
  await chown(file, 0, 0);

  // a writable directory anywhere above the file
  const open = join(dir, 'open');
  const deep = join(open, 'deeper');
  await mkdir(deep, { recursive: true });
  await chmod(open, 0o777);
  const inOpen = join(deep, 'x.img');
  await writeFile(inOpen, fakeExt());
  assert.equal((await unsafeReason(inOpen)).reason, `directory ${open} is writable by group or others (mode 777)`);
  await chmod(open, 0o775);
  assert.equal((await unsafeReason(inOpen)).reason, `directory ${open} is writable by group or others (mode 775)`);
  await chmod(open, 0o755);
  await chown(deep, 65534, 65534);
  assert.equal((await unsafeReason(inOpen)).reason, `directory ${deep} is owned by uid 65534, not root`);
  await chown(deep, 0, 0);
  assert.equal((await unsafeReason(inOpen)).reason, undefined);

  // sticky and world-writable like /tmp: root's entries stay root's
  const sticky = join(dir, 'sticky');
  await mkdir(sticky);
  await chmod(sticky, 0o1777);
  const inSticky = join(sticky, 's.img');
  await writeFile(inSticky, fakeExt());
  await chmod(inSticky, 0o644);
  assert.equal((await unsafeReason(inSticky)).reason, undefined);
  await chown(inSticky, 65534, 65534);
  assert.equal((await unsafeReason(inSticky)).reason, 'it is owned by uid 65534, not root');

  // symlinks are followed: the target is what gets checked and returned
  const link = join(dir, 'link.img');
  await symlink(inOpen, link);
  assert.equal(await trustedImage(link), inOpen);
  await chmod(open, 0o777);
  assert.equal((await unsafeReason(link)).reason, `directory ${open} is writable by group or others (mode 777)`);
});

test('resolveImage refuses an unsafe file unless insecureImage', { skip: !isRoot && 'needs root (chown)' }, async (t) => {
  const dir = await scratch(t);
  const file = join(dir, 'user.img');
  await writeFile(file, fakeExt());
  await chown(file, 65534, 65534);
  await assert.rejects(resolveImage({ image: file }), {
    code: 'EUNSAFEIMAGE',
    message: `refusing image ${file}: it is owned by uid 65534, not root, so a non-root user could change what root mounts`,
    hint: 'make it and its directories root-owned and not writable by others, or pass --insecure-image to use it anyway',
  });
  assert.deepEqual(await resolveImage({ image: file, insecureImage: true }), { path: file, built: false });
});

test('loopsBacking reads sysfs; removeImage refuses an image a loop device uses', async (t) => {
  const images = await cache(t);
  await fill(images);
  const sys = join(images, '..', '..', 'sys-block');
  const img = join(images, `sha256-${A}.img`);
  for (const [dev, backing] of [['loop0', '/elsewhere.img\n'], ['loop1', `${img} (deleted)\n`], ['vda', img]] as const) {
    await mkdir(join(sys, dev, 'loop'), { recursive: true });
    await writeFile(join(sys, dev, 'loop', 'backing_file'), backing);
  }
  await mkdir(join(sys, 'loop2')); // unbound: no loop/ directory
  assert.deepEqual(await loopsBacking(img, sys), ['loop1']);
  await assert.rejects(removeImage('abcdef1', sys), {
    code: 'EBUSY',
    message: `image rm abcdef1: ${img} backs /dev/loop1 (grafted in a container)`,
    hint: "take it out with 'crashcart -u TARGET' first",
  });
  assert.ok(existsSync(img));
  await rm(join(sys, 'loop1'), { recursive: true });
  assert.equal(await removeImage('abcdef1', sys), img);
  assert.ok(!existsSync(img) && !existsSync(`${img}.json`));
  await assert.rejects(removeImage('abcdef1', sys), {
    code: 'ENOIMAGE',
    message: 'image rm abcdef1: no cached image of that name or digest',
    hint: "see 'crashcart image ls'",
  });
  assert.equal(await removeImage('static', sys), join(images, 'static.img'));
  assert.deepEqual((await listImages()).map((i) => i.name), [`sha256-${B}`]);
});

test('crashcart --add: the same set of packages names the same cached image, which is used as it is', async (t) => {
  const images = await cache(t);
  const full = await loadProfile('full');
  const added = attachAdds(['linux-perf,bpftrace', 'linux-perf', 'bash'], full.packages);
  assert.deepEqual(added, ['bpftrace', 'linux-perf'], 'split at commas, the profile\'s own dropped, sorted, once each');
  const name = derivedImageName(full, added);
  assert.match(name, /^full\+[0-9a-f]{12}$/);
  assert.equal(name, `full+${recipeDigest(full, { add: added }).slice(0, 12)}`);
  assert.equal(derivedImageName(full, attachAdds(['bpftrace', 'linux-perf'], full.packages)), name, 'order does not matter');
  assert.notEqual(derivedImageName(full, ['linux-perf']), name);
  assert.notEqual(derivedImageName({ ...full, bashrc: `${full.bashrc}# changed\n` }, added), name, 'another profile recipe, another image');
  assert.throws(() => attachAdds(['jq,'], []), { code: 'EBUILD', message: "invalid package name '' for --add" });
  assert.throws(() => attachAdds(['Perf'], []), { code: 'EBUILD', message: "invalid package name 'Perf' for --add" });

  // built before (the sidecar's recipe matches): used at once, not built and not hashed
  const path = join(images, `${name}.img`);
  await writeFile(path, fakeExt());
  await writeFile(`${path}.json`, JSON.stringify({ sha256: S, profile: 'full', added, recipe: recipeDigest(full, { add: added }), built: '2026-03-04T00:00:00.000Z', sizeBytes: 4096 }));
  const lines: string[] = [];
  const opts = { add: ['linux-perf', 'bpftrace'], image: 'static', insecureImage: !isRoot, progress: (l: string) => lines.push(l) };
  assert.deepEqual(await resolveImage(opts), { path, built: false }, '--add wins over an image named by CRASHCART_IMAGE');
  assert.deepEqual(lines, []);
  // only the profile's own packages: the plain default image
  await writeFile(join(images, 'full.img'), fakeExt()); // no sidecar: used as it is
  assert.deepEqual(await resolveImage({ add: ['bash'], insecureImage: !isRoot }), { path: join(images, 'full.img'), built: false });
});

test('image ls and the messages name an --add image by what it adds', async (t) => {
  const images = await cache(t);
  await fill(images);
  const path = join(images, 'full+0123456789ab.img');
  await writeFile(path, fakeExt());
  await writeFile(`${path}.json`, JSON.stringify({ sha256: A.replace('abcdef', '999999'), profile: 'full', added: ['linux-perf', 'strace'], built: '2026-03-04T05:06:07.123Z', sizeBytes: 4096 }));
  const list = await listImages();
  assert.deepEqual(list.find((i) => i.name === 'full+0123456789ab')?.added, ['linux-perf', 'strace']);
  assert.equal(list.find((i) => i.name === 'static')?.added, undefined);
  const rows = await imageLsRows(list);
  assert.deepEqual(rows, [
    ['NAME', 'SHA256', 'SIZE', 'SOURCE', 'DATE'],
    ['full+0123456789ab', '999999111111', '0.0 MiB', 'profile full + linux-perf, strace', '2026-03-04T05:06:07Z'],
    [`sha256-${A}`, 'abcdef111111', '0.0 MiB', 'http://h/a.img', '2026-02-02T00:00:00Z'],
    [`sha256-${B}`, 'abcdef222222', '0.0 MiB', '-', list[2]!.date.replace(/\.\d+Z$/, 'Z')],
    ['static', '0123456789aa', '0.0 MiB', 'profile static', '2026-01-02T03:04:05Z'],
  ]);
  assert.match(formatTable(rows).split('\n')[1]!, /^full\+0123456789ab {2,}999999111111  0\.0 MiB  profile full \+ linux-perf, strace {2,}2026-03-04T05:06:07Z$/);
  assert.deepEqual(imageLabel(path), { name: 'full+0123456789ab', added: ['linux-perf', 'strace'], text: 'full+0123456789ab (profile full + linux-perf, strace)' });
  assert.deepEqual(imageLabel(join(images, 'static.img')), { name: 'static', added: [], text: 'static (profile static)' });
  assert.deepEqual(imageLabel(join(images, `sha256-${B}.img`)), { name: `sha256-${B}`, added: [], text: `sha256-${B}` });
  const elsewhere = join(images, '..', '..', 'mine.img');
  assert.deepEqual(imageLabel(elsewhere), { name: elsewhere, added: [], text: elsewhere }, 'a file outside the cache by its path');
});
