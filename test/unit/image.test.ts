// Image area logic that needs neither root nor network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { debFileName, parseStanzas } from '../../src/image/apt.js';
import { DEFAULT_EPOCH, recipeDigest, resolveEpoch } from '../../src/image/build.js';
import { cacheDir, defaultImagePath, ensureCacheDir, resolveImage } from '../../src/image/cache.js';
import { checkExt3, ext3Geometry, measureTree, uuidFrom } from '../../src/image/ext3.js';
import { replaceBytes } from '../../src/image/bytes.js';
import { BASH_PATCHES } from '../../src/image/layout.js';
import { loadProfile, parsePackageList, projectRoot } from '../../src/image/profile.js';

async function scratch(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A file that looks like ext3 to checkExt3: a superblock at 1024 with the magic, a journal and its size. */
function fakeExt(size = 4096, o: { blocks?: number; compat?: number; incompat?: number } = {}): Buffer {
  const buf = Buffer.alloc(size);
  buf.writeUInt32LE(o.blocks ?? size / 1024, 1024 + 4); // s_blocks_count, 1 KiB blocks
  buf.writeUInt16LE(0xef53, 1024 + 56);
  buf.writeUInt32LE(o.compat ?? 0x4, 1024 + 92); // has_journal
  buf.writeUInt32LE(o.incompat ?? 0x2, 1024 + 96); // filetype
  return buf;
}

test('checkExt3 accepts an ext3 superblock and rejects anything the kernel would not mount as ext3', async (t) => {
  const dir = await scratch(t);
  const hint = "give an image made by 'crashcart image build' or pulled with 'crashcart image pull'";
  const file = async (name: string, content: Buffer) => {
    const path = join(dir, name);
    await writeFile(path, content);
    return path;
  };
  await checkExt3(await file('good.img', fakeExt()));
  const rejects = async (name: string, content: Buffer, why: string) => {
    const path = await file(name, content);
    await assert.rejects(checkExt3(path), { name: 'CrashcartError', code: 'EBADIMAGE', message: `image ${path} ${why}`, hint });
  };
  await rejects('bad.img', Buffer.alloc(4096), 'is not an ext2/3/4 filesystem (no superblock magic)');
  await rejects('small.img', Buffer.alloc(2047), 'is not an ext2/3/4 filesystem (only 2047 bytes)');
  await rejects('ext2.img', fakeExt(4096, { compat: 0 }), 'is not mountable as ext3: it has no journal (an ext2 filesystem)');
  await rejects('ext4.img', fakeExt(4096, { incompat: 0x2c2 }), 'is not mountable as ext3: it uses ext4 features (extents, 64bit, flex_bg)');
  await rejects('odd.img', fakeExt(4096, { incompat: 0x80002 }), 'is not mountable as ext3: it uses ext4 features (0x80000)');
  await rejects('dirty.img', fakeExt(4096, { incompat: 0x6 }), 'is not mountable read-only: its journal needs recovery (it was not unmounted cleanly)');
  await rejects('cut.img', fakeExt(4096, { blocks: 5 }), 'is truncated (4096 bytes; its superblock says 5120)');
  await assert.rejects(checkExt3(join(dir, 'missing.img')), { code: 'ENOENT' });
});

test('ext3Geometry: 10% + 32 spare inodes, data x 1.02 + inode tables + 1.5 MiB', () => {
  assert.deepEqual(ext3Geometry({ entries: 290, dataKiB: 4300 }), { inodes: 351, blocks: 6010 });
  assert.deepEqual(ext3Geometry({ entries: 1, dataKiB: 0 }), { inodes: 34, blocks: 1545 });
});

test('measureTree counts entries, data blocks and long symlinks', async (t) => {
  const dir = await scratch(t);
  await mkdir(join(dir, 'bin'));
  // three blocks long, the middle one zeros (ELF padding, say): mke2fs writes two of them
  await writeFile(join(dir, 'bin', 'tool'), Buffer.concat([Buffer.alloc(1024, 'a'), Buffer.alloc(1024), Buffer.from('b')]));
  await writeFile(join(dir, 'bin', 'zeros'), Buffer.alloc(5000));
  await symlink('tool', join(dir, 'bin', 'short'));
  await symlink('x'.repeat(60), join(dir, 'bin', 'long'));
  const size = await measureTree(dir);
  assert.equal(size.entries, 6);
  // tool 2 + zeros 0 + long link 1 + two directories of one block plus an index block each
  assert.equal(size.dataKiB, 2 + 0 + 1 + 2 + 2);
  assert.deepEqual(size.paths, ['/bin', '/bin/long', '/bin/short', '/bin/tool', '/bin/zeros']);
  await writeFile(join(dir, 'bin', 'a b'), '');
  await assert.rejects(measureTree(dir), { code: 'EBUILD', message: "unsupported file name 'a b' in /bin" });
});

test('uuidFrom is stable, distinct per seed and shaped like a UUID', () => {
  assert.equal(uuidFrom('a'), uuidFrom('a'));
  assert.notEqual(uuidFrom('a'), uuidFrom('b'));
  assert.match(uuidFrom('a'), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('bash patches keep the length of the strings they replace', () => {
  for (const p of BASH_PATCHES) assert.equal(p.to.length, p.from.length, p.from);
  assert.deepEqual(BASH_PATCHES.map((p) => p.to), ['/dev/crashcart/r', '/dev/crashcart/logout']);
});

test('replaceBytes replaces every occurrence in place', () => {
  const buf = Buffer.from('x/etc/bash.bashrc\0y/etc/bash.bashrc\0');
  assert.equal(replaceBytes(buf, '/etc/bash.bashrc', '/dev/crashcart/r'), 2);
  assert.equal(buf.toString(), 'x/dev/crashcart/r\0y/dev/crashcart/r\0');
  assert.equal(replaceBytes(buf, '/etc/bash.bashrc', '/dev/crashcart/r'), 0);
  assert.throws(() => replaceBytes(buf, '/etc/x', '/etc/yy'), /replacement for \/etc\/x must be 6 bytes/);
});

test('debFileName quotes the epoch like apt-get download', () => {
  assert.equal(
    debFileName({ name: 'busybox-static', version: '1:1.35.0-4+deb12u1+b1', arch: 'amd64' }),
    'busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb',
  );
});

test('parseStanzas splits apt-cache show output', () => {
  const text = 'Package: a\nVersion: 1\nDescription: x\n continued\n\nPackage: b\nSHA256: ab\n';
  assert.deepEqual(parseStanzas(text), [
    { Package: 'a', Version: '1', Description: 'x' },
    { Package: 'b', SHA256: 'ab' },
  ]);
});

test('packages.txt: comments, blank lines, duplicates, bad names', async () => {
  assert.deepEqual(parsePackageList('# c\nbusybox-static  # the shell\n\nbash-static\nbash-static\n'), ['busybox-static', 'bash-static']);
  assert.throws(() => parsePackageList('Bash\n'), { message: "invalid package name 'Bash' in packages.txt" });
  const p = await loadProfile('static');
  assert.deepEqual(p.packages, ['busybox-static', 'bash-static']);
  assert.equal(p.bashrc, await readFile(join(projectRoot(), 'images/static/bashrc'), 'utf8'));
  assert.match(recipeDigest(p), /^[0-9a-f]{64}$/);
  assert.notEqual(recipeDigest(p), recipeDigest({ ...p, bashrc: `${p.bashrc}#\n` }));
});

test('resolveEpoch: explicit value, SOURCE_DATE_EPOCH, default, bad input', () => {
  assert.equal(resolveEpoch(5, '7'), 5);
  assert.equal(resolveEpoch(undefined, '7'), 7);
  assert.equal(resolveEpoch(undefined, undefined), DEFAULT_EPOCH);
  assert.equal(resolveEpoch(undefined, ''), DEFAULT_EPOCH);
  assert.throws(() => resolveEpoch(undefined, 'soon'), {
    name: 'CrashcartError',
    message: "SOURCE_DATE_EPOCH 'soon' is not a time in seconds since 1970",
    hint: 'set it to a whole number of seconds (date +%s), or unset it',
  });
  assert.throws(() => resolveEpoch(undefined, '99999999999999999999'), { message: "SOURCE_DATE_EPOCH '99999999999999999999' is not a time in seconds since 1970" });
  assert.throws(() => resolveEpoch(-1), { message: 'Expected a non-negative integer for sourceDateEpoch but received -1' });
});

test('cacheDir follows CRASHCART_CACHE_DIR; ensureCacheDir makes it private', async (t) => {
  const dir = await scratch(t);
  const saved = process.env.CRASHCART_CACHE_DIR;
  t.after(() => {
    if (saved === undefined) delete process.env.CRASHCART_CACHE_DIR;
    else process.env.CRASHCART_CACHE_DIR = saved;
  });
  delete process.env.CRASHCART_CACHE_DIR;
  assert.equal(cacheDir(), '/var/lib/crashcart');
  process.env.CRASHCART_CACHE_DIR = join(dir, 'cache');
  assert.equal(defaultImagePath(), join(dir, 'cache/images/full.img'));
  assert.equal(defaultImagePath('minimal'), join(dir, 'cache/images/minimal.img'));
  await ensureCacheDir();
  assert.equal((await stat(join(dir, 'cache'))).mode & 0o777, 0o700);
  const open = join(dir, 'open');
  await mkdir(open);
  await chmod(open, 0o777);
  await assert.rejects(ensureCacheDir(open), {
    name: 'CrashcartError',
    message: `cache directory ${open} is writable by others or not ours (mode 777, uid ${process.getuid?.()})`,
    hint: `run 'chown root: ${open} && chmod 700 ${open}'`,
  });
});

test('resolveImage checks a named image without building anything', async (t) => {
  const dir = await scratch(t);
  const missing = join(dir, 'missing.img');
  await assert.rejects(resolveImage({ image: missing }), {
    code: 'ENOIMAGE',
    message: `image file ${missing} not found: ENOENT`,
    hint: `build one with 'crashcart image build -o ${missing}'`,
  });
  await assert.rejects(resolveImage({ image: dir }), {
    code: 'ENOIMAGE',
    message: `image file ${dir} not found: it is not a regular file`,
    hint: `build one with 'crashcart image build -o ${dir}'`,
  });
  const junk = join(dir, 'junk.img');
  await writeFile(junk, Buffer.alloc(4096));
  await assert.rejects(resolveImage({ image: junk }), { code: 'EBADIMAGE' });
  const good = join(dir, 'good.img');
  await writeFile(good, fakeExt());
  assert.deepEqual(await resolveImage({ image: good }), { path: good, built: false });
});

// The bashrc is POSIX sh: run it with whatever shells the host has.
const BASHRC = join(projectRoot(), 'images/static/bashrc');
const SHELLS = [['/bin/sh'], ['/bin/bash'], ...(existsSync('/bin/busybox') ? [['/bin/busybox', 'sh']] : [])];
// (set inside the script: a bogus LD_PRELOAD in the environment would upset the shell itself)
const PROBE = `export LD_PRELOAD=/x.so LD_LIBRARY_PATH=/x; . ${BASHRC}; . ${BASHRC}; printf '%s|%s|%s|%s|%s|%s' "$PATH" "$SHELL" "\${LD_PRELOAD-unset}" "\${LD_LIBRARY_PATH-unset}" "\${HISTFILE-unset}" "\${PS1-unset}"`;

async function probe([shell, ...args]: string[], env: Record<string, string>): Promise<string[]> {
  // set -eu: the file must be safe in strict non-interactive scripts
  const { stdout, stderr } = await execa(shell!, [...args, '-euc', PROBE], { env, extendEnv: false, stdin: 'ignore' });
  assert.equal(stderr, '');
  return stdout.split('|');
}

test('bashrc puts the toolkit first once, keeps the container PATH and cleans the environment', async () => {
  for (const argv of SHELLS) {
    const sh = argv.join(' ');
    const [path, shell, preload, libpath, histfile, ps1] = await probe(argv, {
      PATH: '/usr/bin:/bin',
      HISTFILE: '/root/.bash_history',
    });
    assert.equal(path, '/dev/crashcart/bin:/usr/bin:/bin', sh);
    assert.equal(shell, '/dev/crashcart/bin/bash', sh);
    assert.deepEqual([preload, libpath, histfile], ['unset', 'unset', 'unset'], sh);
    // the prompt is only for interactive shells (dash has its own default PS1 regardless)
    assert.doesNotMatch(ps1!, /crashcart/, sh);
    assert.equal((await probe(argv, { PATH: '/dev/crashcart/bin:/bin' }))[0], '/dev/crashcart/bin:/bin', sh);
    assert.equal((await probe(argv, { PATH: '/bin:/dev/crashcart/bin' }))[0], '/dev/crashcart/bin:/bin:/dev/crashcart/bin', sh);
  }
  // an empty PATH gets the usual directories rather than the current one
  const { stdout } = await execa('/bin/sh', ['-c', `PATH=; . ${BASHRC}; printf %s "$PATH"`], { extendEnv: false, env: {}, stdin: 'ignore' });
  assert.equal(stdout, '/dev/crashcart/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
});

test('bashrc sets a crashcart prompt in interactive shells', async () => {
  const { stdout } = await execa('/bin/bash', ['--norc', '-ic', `. ${BASHRC}; printf %s "$PS1"`], { extendEnv: false, env: { PATH: '/bin' }, stdin: 'ignore', reject: false });
  assert.equal(stdout, '[crashcart \\h \\w]\\$ ');
});
