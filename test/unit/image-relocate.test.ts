// The parts of relocated toolkit builds that need neither root nor network: ELF headers,
// apt's dependency output, profiles and their recipe digests, the bashrc of full/minimal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseDepends, walkDepends } from '../../src/image/apt.js';
import { addedPackages, fromDirInfo } from '../../src/image/build.js';
import { isElf, readElf, symbolExtent } from '../../src/image/elf.js';
import { dirDigest, LAYOUT_VERSION, loadProfile, parseNameList, projectRoot, recipeDigest } from '../../src/image/profile.js';
import { NO_OPENSSLDIR, PATH_PATCHES, paddedPath } from '../../src/image/data.js';
import { INTERP, RPATH } from '../../src/image/prefix.js';
import { droppedTool, excludedDependency } from '../../src/image/relocate.js';
import { onPath } from '../helpers/host.js';

async function scratch(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';

test('readElf: interpreter and DT_NEEDED of a dynamic executable, SONAME of a library', async () => {
  const ls = readElf(await readFile('/bin/ls'), '/bin/ls');
  assert.equal(ls?.interp, '/lib64/ld-linux-x86-64.so.2');
  assert.ok(ls?.needed.includes('libc.so.6'), String(ls?.needed));
  assert.equal(ls?.rpath, undefined);
  assert.equal(ls?.runpath, undefined);
  const libc = readElf(await readFile(LIBC), LIBC);
  assert.equal(libc?.soname, 'libc.so.6');
  assert.deepEqual(libc?.needed, ['ld-linux-x86-64.so.2']);
});

test('symbolExtent: where a defined dynamic symbol lies in the file, as readelf says', async (t) => {
  if (!onPath('readelf')) return t.skip('readelf (binutils) is not installed');
  const buf = await readFile(LIBC);
  // readelf: the symbol's address and size; the segment that loads it maps address to offset
  const sym = /^\s*\d+: ([0-9a-f]+)\s+(\d+) OBJECT\s+GLOBAL\s+DEFAULT\s+\d+ _IO_2_1_stdin_@@GLIBC_2\.2\.5$/m.exec((await execa('readelf', ['-W', '--dyn-syms', LIBC])).stdout);
  assert.ok(sym, 'readelf shows _IO_2_1_stdin_');
  const loads = [...(await execa('readelf', ['-W', '-l', LIBC])).stdout.matchAll(/^\s*LOAD\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x[0-9a-f]+ 0x([0-9a-f]+)/gm)]
    .map((m) => ({ offset: parseInt(m[1]!, 16), vaddr: parseInt(m[2]!, 16), filesz: parseInt(m[3]!, 16) }));
  const addr = parseInt(sym[1]!, 16);
  const seg = loads.find((l) => addr >= l.vaddr && addr < l.vaddr + l.filesz)!;
  assert.deepEqual(symbolExtent(buf, /^_IO_2_1_stdin_$/), { offset: seg.offset + addr - seg.vaddr, size: Number(sym[2]) });
  assert.equal(symbolExtent(buf, /^no_such_symbol$/), undefined);
  assert.equal(symbolExtent(Buffer.from('#!/bin/sh\n'), /^x$/), undefined);
});

test('readElf: a static binary has no interpreter and needs nothing; non-ELF is undefined', async (t) => {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) return t.skip('no static busybox on this host (apt-get install busybox-static)');
  const info = readElf(await readFile(busybox), busybox);
  assert.equal(info?.interp, undefined);
  assert.deepEqual(info?.needed, []);
  assert.equal(readElf(Buffer.from('#!/bin/sh\necho\n')), undefined);
  assert.equal(isElf(Buffer.from('\x7fEL')), false);
});

test('readElf: rejects ELF it cannot read, with the file named', () => {
  const elf32 = Buffer.alloc(64);
  elf32.write('\x7fELF', 0, 'latin1');
  elf32[4] = 1; // ELFCLASS32
  elf32[5] = 1;
  assert.throws(() => readElf(elf32, 'x32'), { message: 'cannot read ELF headers of x32: not a 64-bit little-endian ELF file' });
  const truncated = Buffer.from(elf32.subarray(0, 20));
  truncated[4] = 2;
  assert.throws(() => readElf(truncated, 'short'), { message: 'cannot read ELF headers of short: truncated ELF header' });
});

test('readElf sees what patchelf wrote: the prefix interpreter and an RPATH, not a RUNPATH', async (t) => {
  if (!onPath('patchelf')) return t.skip('patchelf not installed (apt-get install patchelf)');
  const dir = await scratch(t);
  const exe = join(dir, 'ls');
  await copyFile('/bin/ls', exe);
  await execa('patchelf', ['--set-interpreter', INTERP, '--force-rpath', '--set-rpath', RPATH, exe]);
  const info = readElf(await readFile(exe), exe);
  assert.equal(info?.interp, '/dev/crashcart/lib/ld-linux-x86-64.so.2');
  assert.equal(info?.rpath, '/dev/crashcart/lib');
  assert.equal(info?.runpath, undefined);
  assert.ok(info?.needed.includes('libc.so.6'));
  // the same with --set-rpath alone gives a RUNPATH, which the check must tell apart
  await execa('patchelf', ['--remove-rpath', exe]);
  await execa('patchelf', ['--set-rpath', RPATH, exe]);
  const runpath = readElf(await readFile(exe), exe);
  assert.equal(runpath?.runpath, '/dev/crashcart/lib');
  assert.equal(runpath?.rpath, undefined);
});

// Shaped like `apt-cache depends --recurse`: '|' ORs with the next line, providers indented.
const DEPENDS = `tool
  Depends: libc6
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
  Depends: libsystemd0
    libelogind0
 |Depends: gawk
  Depends: mawk
  PreDepends: <awk>
    original-awk
    gawk
    mawk
libc6
  Depends: libgcc-s1
libgcc-s1
  Depends: libc6
debconf
  Depends: perl-base
cdebconf
perl-base
libsystemd0
  Depends: libzstd1
libzstd1
libelogind0
gawk
  Depends: libmpfr6
libmpfr6
mawk
  Depends: libc6
original-awk
<debconf-2.0>
<awk>
`;

test('parseDepends: groups of alternatives with their providers', () => {
  const g = parseDepends(DEPENDS);
  assert.deepEqual(g.get('tool'), [
    [{ name: 'libc6', providers: [] }],
    [{ name: 'debconf', providers: [] }, { name: '<debconf-2.0>', providers: ['cdebconf', 'debconf'] }],
    [{ name: 'libsystemd0', providers: ['libelogind0'] }],
    [{ name: 'gawk', providers: [] }, { name: 'mawk', providers: [] }],
    [{ name: '<awk>', providers: ['original-awk', 'gawk', 'mawk'] }],
  ]);
  assert.deepEqual(g.get('cdebconf'), []);
});

test('walkDepends: roots first, first allowed alternative, excluded ones left out', () => {
  const g = parseDepends(DEPENDS);
  const excluded = (n: string) => ['debconf', 'cdebconf', 'gawk', 'perl-base'].includes(n);
  assert.deepEqual(walkDepends(g, ['tool'], excluded), ['tool', 'libc6', 'libgcc-s1', 'libsystemd0', 'libzstd1', 'mawk']);
  // a root is taken even when a dependency rule would exclude it; an awk already chosen counts
  assert.deepEqual(walkDepends(g, ['tool', 'gawk'], excluded), ['tool', 'gawk', 'libc6', 'libgcc-s1', 'libmpfr6', 'libsystemd0', 'libzstd1']);
  assert.deepEqual(walkDepends(g, ['tool'], () => false), ['tool', 'debconf', 'gawk', 'libc6', 'libgcc-s1', 'libmpfr6', 'libsystemd0', 'libzstd1', 'perl-base']);
});

test('excluded dependencies and dropped tools', () => {
  for (const n of ['perl-base', 'perl-modules-5.36', 'libperl-dev', 'libfile-find-rule-perl', 'python3.11', 'python3.11-minimal', 'libpython3.11-stdlib', 'libpython3-stdlib', 'libpam0g', 'libpam-modules', 'libelogind0', 'debconf', 'cdebconf', 'dpkg']) {
    assert.ok(excludedDependency(n), n);
  }
  // the interpreters' shared objects are libraries like any other (perf links both)
  for (const n of ['libc6', 'libssl3', 'libsystemd0', 'libselinux1', 'libcurl4', 'zlib1g', 'libperl5.36', 'libpython3.11']) assert.ok(!excludedDependency(n), n);
  for (const n of ['ldd', 'ldconfig', 'login', 'su', 'mkfs', 'mkfs.minix', 'fsck.cramfs', 'mkswap', 'reboot', 'init', 'httpd']) assert.ok(droppedTool(n), n);
  for (const n of ['strace', 'nsenter', 'fsfreeze', 'mkdir', 'findmnt', 'ss']) assert.ok(!droppedTool(n), n);
});

test('search path patches keep the length of what they replace', () => {
  for (const p of PATH_PATCHES) {
    assert.equal(Buffer.byteLength(p.to), Buffer.byteLength(p.from), `${p.file}: ${p.from}`);
    // into the prefix, or (OpenSSL's configuration) nowhere
    assert.ok(p.to.includes('/dev/crashcart/') || p.to.includes(NO_OPENSSLDIR), p.file);
    assert.equal(p.to.endsWith('\0'), p.from.endsWith('\0'), `${p.file}: ${p.from}`);
  }
  assert.equal(paddedPath('/usr/lib/x86_64-linux-gnu/xtables\0', 'lib/xtables'), `/dev/crashcart/${'/'.repeat(7)}lib/xtables\0`);
  assert.throws(() => paddedPath('/usr/share/nmap\0', 'share/nmap'), /is longer than/);
});

test('profiles: full and minimal are relocated, static is not; tools.txt', async () => {
  const full = await loadProfile('full');
  const minimal = await loadProfile('minimal');
  const stat = await loadProfile('static');
  assert.equal(full.kind, 'relocated');
  assert.equal(minimal.kind, 'relocated');
  assert.equal(stat.kind, 'static');
  for (const p of ['bash', 'strace', 'gdb-minimal', 'curl', 'tcpdump', 'busybox-static', 'ca-certificates', 'libmagic-mgc']) assert.ok(full.packages.includes(p), p);
  assert.equal(full.tools, undefined);
  assert.ok(minimal.tools?.includes('nsenter'));
  assert.deepEqual(Object.keys(full.files).sort(), ['files/etc/tmux.conf', 'files/share/vim/vimrc.tiny', 'wrap/curl', 'wrap/gdb', 'wrap/iperf3', 'wrap/ngrep', 'wrap/openssl', 'wrap/tcpdump', 'wrap/tmux']);
  assert.match(full.files['wrap/tcpdump']!, /^x[0-9a-f]{64}$/);
  assert.deepEqual(stat.files, {});
  assert.deepEqual(parseNameList('# c\nss  # sockets\n\nip\nip\n', 'tools.txt'), ['ss', 'ip']);
  assert.throws(() => parseNameList('a b\n', 'tools.txt'), { message: "invalid name 'a b' in tools.txt" });
});

test("recipeDigest: static keeps the digest it always had; extras and profile files change it", async () => {
  const stat = await loadProfile('static');
  const before = createHash('sha256')
    .update(JSON.stringify({ layout: LAYOUT_VERSION, profile: stat.name, packages: stat.packages, bashrc: stat.bashrc }))
    .digest('hex');
  assert.equal(recipeDigest(stat), before);
  assert.equal(recipeDigest(stat, { add: [] }), before);
  const full = await loadProfile('full');
  const base = recipeDigest(full);
  assert.notEqual(recipeDigest(full, { add: ['jq'] }), base);
  assert.notEqual(recipeDigest(full, { fromDir: 'ab' }), base);
  assert.notEqual(recipeDigest({ ...full, files: { ...full.files, 'wrap/tcpdump': 'x0' } }), base);
  assert.notEqual(recipeDigest({ ...full, tools: ['ls'] }), base);
});

test('--add names are checked; --from-dir must be a directory and is digested by content', async (t) => {
  assert.deepEqual(addedPackages(['jq', 'bash', 'jq'], ['bash']), ['jq']);
  assert.deepEqual(addedPackages(undefined, []), []);
  assert.throws(() => addedPackages(['Jq'], []), { code: 'EBUILD', message: "invalid package name 'Jq' for --add", hint: 'Debian names have lowercase letters, digits, + - . only' });
  const dir = await scratch(t);
  await assert.rejects(fromDirInfo(join(dir, 'none')), { code: 'EBUILD', message: `--from-dir ${join(dir, 'none')} is not a directory` });
  const a = join(dir, 'a');
  await mkdir(join(a, 'bin'), { recursive: true });
  await writeFile(join(a, 'bin', 'hello'), '#!/dev/crashcart/bin/sh\necho hello\n', { mode: 0o755 });
  await symlink('hello', join(a, 'bin', 'hi'));
  const info = await fromDirInfo(a);
  assert.equal(info.files, 2);
  assert.equal(info.sha256, await dirDigest(a));
  await writeFile(join(a, 'bin', 'hello'), '#!/dev/crashcart/bin/sh\necho hullo\n', { mode: 0o755 });
  assert.notEqual((await fromDirInfo(a)).sha256, info.sha256);
});

// The bashrc of the relocated profiles is POSIX sh too: source it with the host's shells.
const SHELLS = [['/bin/sh'], ['/bin/bash'], ...(existsSync('/bin/busybox') ? [['/bin/busybox', 'sh']] : [])];

for (const profile of ['full', 'minimal'] as const) {
  test(`${profile} bashrc: toolkit PATH once, data paths, clean environment, under set -eu`, async () => {
    const rc = join(projectRoot(), 'images', profile, 'bashrc');
    const probe = `export LD_PRELOAD=/x.so LD_LIBRARY_PATH=/x; . ${rc}; . ${rc}; printf '%s|' "$PATH" "$SHELL" "\${LD_PRELOAD-unset}" "\${LD_LIBRARY_PATH-unset}" "\${TERMINFO_DIRS-unset}" "\${LOCPATH-unset}" "\${MAGIC-unset}" "\${LANG-unset}" "\${HISTFILE-unset}" "\${LESSHISTFILE-unset}" "\${HTOPRC-unset}"`;
    for (const [shell, ...args] of SHELLS) {
      const r = await execa(shell!, [...args, '-euc', probe], { env: { PATH: '/usr/bin:/bin', HISTFILE: '/h' }, extendEnv: false, stdin: 'ignore' });
      assert.equal(r.stderr, '');
      const [path, sh, preload, libpath, terminfo, locpath, magic, lang, hist, lesshist, htoprc] = r.stdout.split('|');
      assert.equal(path, '/dev/crashcart/bin:/usr/bin:/bin', shell);
      assert.equal(sh, '/dev/crashcart/bin/bash');
      assert.deepEqual([preload, libpath, hist], ['unset', 'unset', 'unset']);
      assert.equal(terminfo, '/dev/crashcart/share/terminfo:');
      assert.equal(locpath, '/dev/crashcart/share/locale');
      assert.equal(magic, profile === 'full' ? '/dev/crashcart/share/misc/magic.mgc' : 'unset');
      assert.equal(lang, 'C.UTF-8');
      // nothing written into the container
      assert.equal(lesshist, '-');
      assert.equal(htoprc, profile === 'full' ? '/dev/null' : 'unset');
    }
    // the container's own locale choice stays
    const { stdout } = await execa('/bin/sh', ['-c', `. ${rc}; printf %s "$LANG"`], { env: { PATH: '/bin', LANG: 'de_DE.UTF-8' }, extendEnv: false });
    assert.equal(stdout, 'de_DE.UTF-8');
  });
}

test("full bashrc: the container's CA bundle when it has one, else the toolkit's", async () => {
  const rc = await readFile(join(projectRoot(), 'images/full/bashrc'), 'utf8');
  const run = async (root: string) => {
    // the container's /etc and the toolkit, moved under `root`
    const text = rc.replace(/(?<![\w/])\/etc\//g, `${root}/etc/`).replaceAll(ours, `${root}/tk.crt`);
    const { stdout } = await execa('/bin/sh', ['-euc', `${text}\nprintf '%s|%s|%s' "\${CURL_CA_BUNDLE-unset}" "\${SSL_CERT_FILE-unset}" "\${crashcart_ca-unset}"`], { env: { PATH: '/bin' }, extendEnv: false });
    const [bundle, file, tmp] = stdout.split('|');
    assert.equal(tmp, 'unset', 'the loop variable is not left behind');
    return `${bundle}|${file}`;
  };
  const ours = '/dev/crashcart/etc/ssl/certs/ca-certificates.crt';
  assert.ok(rc.includes(ours));
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-unit-'));
  try {
    assert.equal(await run(dir), 'unset|unset', 'nothing at all: nothing set');
    await writeFile(join(dir, 'tk.crt'), '');
    assert.equal(await run(dir), `${dir}/tk.crt|${dir}/tk.crt`, "none in the container: the toolkit's");
    await mkdir(join(dir, 'etc', 'pki', 'tls', 'certs'), { recursive: true });
    await writeFile(join(dir, 'etc', 'pki', 'tls', 'certs', 'ca-bundle.crt'), '');
    assert.equal(await run(dir), `${dir}/etc/pki/tls/certs/ca-bundle.crt|${dir}/etc/pki/tls/certs/ca-bundle.crt`);
    await mkdir(join(dir, 'etc', 'ssl', 'certs'), { recursive: true });
    await writeFile(join(dir, 'etc', 'ssl', 'certs', 'ca-certificates.crt'), '');
    assert.equal(await run(dir), 'unset|unset', "Debian's path: curl finds it by itself");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
