// The relocated toolkit profiles (full, minimal), built for real with the host's apt (as
// root), checked by parsing the built tree, and grafted once into a scratch container.
// Each profile is built once and shared by the tests of this file.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer } from '../../src/demo/scratch.js';
import { buildImage } from '../../src/image/build.js';
import { readElf } from '../../src/image/elf.js';
import { runCrashcart } from '../helpers/cli.js';
import { assertNoLeaks, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';

const TOOLS = ['apt-get', 'apt-cache', 'dpkg', 'mke2fs', 'debugfs', 'e2fsck', 'patchelf'];
const INTERP = '/dev/crashcart/lib/ld-linux-x86-64.so.2';
const RPATH = '/dev/crashcart/lib';

function ready(t: TestContext): boolean {
  return requireRoot(t) && TOOLS.every((name) => requireCommand(t, name));
}

// One private cache for every build of this file: .deb files are downloaded once.
const work = mkdtempSync(join(tmpdir(), 'crashcart-e2e-profiles-'));
process.once('exit', () => rmSync(work, { recursive: true, force: true }));
const cache = join(work, 'cache');
const debCache = join(cache, 'debs');

const once = <T>(fn: () => Promise<T>) => {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
};

/** full through the CLI, as a user builds it (no terminal: no progress lines). */
const fullImage = once(async () => {
  const out = join(work, 'full.img');
  const r = await runCrashcart(['image', 'build', '--profile', 'full', '-o', out], { env: { CRASHCART_CACHE_DIR: cache }, timeout: 600_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const [path, sha] = r.stdout.split('\n');
  assert.equal(path, out);
  return { path: out, sha256: sha!.replace(/^sha256:/, '') };
});
const minimalImage = once(() => buildImage({ profile: 'minimal', output: join(work, 'minimal.img'), debCache }));

/** The image's files, dumped with debugfs (no mount). */
async function unpack(image: string, name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  await execa('debugfs', ['-R', `rdump / ${dir}`, image], { stdin: 'ignore', env: { LC_ALL: 'C' } });
  return dir;
}
const fullTree = once(async () => unpack((await fullImage()).path, 'full-tree'));
const minimalTree = once(async () => unpack((await minimalImage()).path, 'minimal-tree'));

async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

/**
 * Checks the relocation rules on a tree: every dynamic executable of bin/ and libexec/ has
 * the prefix's loader and an RPATH (never a RUNPATH) of the prefix's lib/, libraries are
 * left alone, every DT_NEEDED of bin/, libexec/ and lib/ is in lib/. Returns the numbers.
 */
async function checkRelocated(root: string): Promise<{ dynamic: number; static: number; scripts: number }> {
  const lib = new Set(await entries(join(root, 'lib')));
  const seen = { dynamic: 0, static: 0, scripts: 0 };
  // the plugin directories (xtables, ossl-modules, engines-3) are libraries too
  const plugins: string[] = [];
  for (const n of await entries(join(root, 'lib'))) if ((await lstat(join(root, 'lib', n))).isDirectory()) plugins.push(`lib/${n}`);
  for (const dir of ['bin', 'libexec', 'lib', ...plugins]) {
    const isLib = dir === 'lib' || dir.startsWith('lib/');
    for (const name of await entries(join(root, dir))) {
      const path = join(root, dir, name);
      if (!(await lstat(path)).isFile()) continue;
      const buf = await readFile(path);
      const elf = readElf(buf, `${dir}/${name}`);
      if (!elf) {
        if (isLib) continue;
        const line = buf.toString('latin1', 0, Math.max(0, buf.indexOf(0x0a)));
        assert.match(line, /^#!\/dev\/crashcart\/bin\/(ba)?sh( |$)/, `${dir}/${name} is a script for another interpreter`);
        seen.scripts++;
        continue;
      }
      for (const n of elf.needed) assert.ok(lib.has(n), `${dir}/${name} needs ${n}, which is not in lib/`);
      assert.equal(elf.runpath, undefined, `${dir}/${name} has a RUNPATH`);
      if (isLib) {
        assert.equal(elf.rpath, undefined, `${dir}/${name} was patched`);
        continue;
      }
      if (elf.interp === undefined) {
        seen.static++;
        continue;
      }
      assert.equal(elf.interp, INTERP, `${dir}/${name}`);
      assert.equal(elf.rpath, RPATH, `${dir}/${name}`);
      seen.dynamic++;
    }
  }
  assert.ok(lib.has('ld-linux-x86-64.so.2'));
  return seen;
}

/** Runs a program of the tree on the host through the tree's own loader. */
async function runInTree(root: string, tool: string, args: string[]): Promise<string> {
  const r = await execa(join(root, 'lib', 'ld-linux-x86-64.so.2'), ['--library-path', join(root, 'lib'), join(root, 'bin', tool), ...args], {
    stdin: 'ignore',
    env: { PATH: '/usr/bin:/bin' },
    extendEnv: false,
  });
  return r.stdout;
}

const FULL_TOOLS = [
  'bash', 'sh', 'ls', 'cat', 'ps', 'top', 'pgrep', 'pmap', 'free', 'pstree', 'fuser', 'killall', 'nsenter', 'setpriv', 'lsblk',
  'findmnt', 'strace', 'ltrace', 'gdb', 'lsof', 'ip', 'ss', 'ping', 'netstat', 'curl', 'tcpdump', 'socat', 'nc', 'less', 'vi',
  'vim', 'nano', 'find', 'xargs', 'grep', 'sed', 'awk', 'file', 'htop', 'tar', 'gzip', 'diff', 'getent', 'busybox', 'wget',
  'dig', 'host', 'nslookup', 'openssl', 'jq', 'iptables', 'ip6tables', 'iptables-save', 'nft', 'conntrack', 'ethtool', 'mtr',
  'mtr-packet', 'iperf3', 'iostat', 'pidstat', 'mpstat', 'sar', 'eu-stack', 'eu-readelf', 'capsh', 'getpcaps', 'setcap', 'tmux',
  'traceroute', 'ngrep', 'nmap', 'nping',
];

test('full: every executable relocated, every library found, data and manifest in place', async (t) => {
  if (!ready(t)) return;
  const root = await fullTree();
  const bin = await entries(join(root, 'bin'));
  for (const tool of FULL_TOOLS) assert.ok(bin.includes(tool), `bin/${tool} missing`);
  for (const gone of ['ldd', 'ldconfig', 'ld.so', 'login', 'su', 'sulogin', 'mkfs', 'fsck', 'mkswap', 'agetty', 'reboot', 'init', 'httpd', 'perl']) {
    assert.ok(!bin.includes(gone), `bin/${gone} should not be there`);
  }
  const seen = await checkRelocated(root);
  t.diagnostic(`full: ${seen.dynamic} relocated executables, ${seen.static} static, ${seen.scripts} scripts`);
  assert.ok(seen.dynamic > 150, String(seen.dynamic));
  assert.equal(seen.static, 1, 'busybox is the only static executable');

  // names Debian makes with update-alternatives, busybox for the rest
  assert.equal(await readlink(join(root, 'bin', 'awk')), 'mawk');
  assert.equal(await readlink(join(root, 'bin', 'vi')), 'vim.tiny');
  assert.equal(await readlink(join(root, 'bin', 'vim')), 'vim.tiny');
  assert.equal(await readlink(join(root, 'bin', 'nc')), 'nc.openbsd');
  assert.equal(await readlink(join(root, 'bin', 'sh')), 'bash');
  assert.equal(await readlink(join(root, 'bin', 'pkill')), 'pgrep');
  assert.equal(await readlink(join(root, 'bin', 'wget')), 'busybox');
  assert.equal(await readlink(join(root, 'bin', 'iptables')), 'iptables-nft');
  assert.equal(await readlink(join(root, 'bin', 'iptables-nft')), 'xtables-nft-multi');
  assert.equal(await readlink(join(root, 'bin', 'traceroute')), 'traceroute.db', 'Debian\'s traceroute, not busybox\'s');
  assert.equal(await readlink(join(root, 'bin', 'sar')), 'sar.sysstat');
  assert.ok((await lstat(join(root, 'bin', 'nslookup'))).isFile(), "bind's nslookup, not busybox's");
  // wrappers around the real binaries in libexec/, and sar's data collector
  assert.match(await readFile(join(root, 'bin', 'tcpdump'), 'utf8'), /setpriv --reuid=65534 [\s\S]*\/dev\/crashcart\/libexec\/tcpdump/);
  assert.match(await readFile(join(root, 'bin', 'ngrep'), 'utf8'), /setpriv --reuid=65534 [\s\S]*\/dev\/crashcart\/libexec\/ngrep/);
  assert.deepEqual(await entries(join(root, 'libexec')), ['curl', 'gdb', 'iperf3', 'ngrep', 'openssl', 'sadc', 'tcpdump', 'tmux']);
  assert.equal(await readlink(join(root, 'sadc')), 'libexec/sadc');
  // plugins in lib/, where the patched libraries look for them
  const lib = await entries(join(root, 'lib'));
  for (const d of ['xtables', 'ossl-modules', 'engines-3']) assert.ok(lib.includes(d), `lib/${d}`);
  assert.ok((await entries(join(root, 'lib', 'xtables'))).includes('libxt_comment.so'));
  assert.deepEqual(await entries(join(root, 'lib', 'ossl-modules')), ['legacy.so']);
  assert.ok(lib.includes('libblas.so.3'), 'libblas.so.3 (an alternatives link on Debian) for liblinear');
  assert.ok(lib.some((n) => /^libisc-9\.\d+\.\d+-.*~.*-Debian\.so$/.test(n)), 'a library name with ~');
  const crypto = await readFile(join(root, 'lib', 'libcrypto.so.3'));
  for (const gone of ['/usr/lib/ssl\0', '/usr/lib/x86_64-linux-gnu/ossl-modules\0', '/usr/lib/x86_64-linux-gnu/engines-3\0']) assert.equal(crypto.indexOf(gone), -1, gone);
  assert.notEqual(crypto.indexOf('/proc/0//ssl\0'), -1);
  assert.notEqual((await readFile(join(root, 'lib', 'libxtables.so.12'))).indexOf('lib/xtables\0'), -1);
  assert.notEqual((await readFile(join(root, 'libexec', 'tmux'))).indexOf('/etc/tmux.conf\0'), -1);
  // ICU's data is zeroed: the image holds almost none of its blocks (mke2fs skips zeros)
  const icu = lib.find((n) => /^libicudata\.so\.\d+\.\d+$/.test(n));
  assert.ok(icu, 'libicudata');
  assert.ok((await lstat(join(root, 'lib', icu))).size > 20 * 1048576);
  const icuStat = (await execa('debugfs', ['-R', `stat /lib/${icu}`, (await fullImage()).path], { stdin: 'ignore', env: { LC_ALL: 'C' } })).stdout;
  const sectors = Number(/Blockcount: (\d+)/.exec(icuStat)?.[1]);
  assert.ok(sectors * 512 < 1048576, `lib/${icu} takes ${sectors * 512} bytes in the image`);
  // the dynamic bash reads the toolkit's bashrc, not the container's
  const bash = await readFile(join(root, 'bin', 'bash'));
  assert.equal(bash.indexOf('/etc/bash.bashrc'), -1);
  assert.notEqual(bash.indexOf('/dev/crashcart/r\0'), -1);
  assert.match(await runInTree(root, 'bash', ['--norc', '-c', 'echo $BASH_VERSION']), /^5\./);
  assert.match(await runInTree(root, 'strace', ['-V']), /^strace -- version/);

  // data under the prefix
  for (const f of ['share/terminfo/x/xterm-256color', 'share/terminfo/t/tmux-256color', 'share/terminfo/s/screen', 'share/terminfo/k/kitty',
    'share/locale/C.utf8/LC_CTYPE', 'share/misc/magic.mgc', 'etc/services', 'etc/protocols', 'share/vim/vimrc.tiny',
    'etc/ssl/openssl.cnf', 'etc/tmux.conf', 'share/nmap/nmap-services', 'share/nmap/nmap-service-probes', 'share/nmap/nse_main.lua',
    'share/nmap/nselib/stdnse.lua', 'share/nmap/scripts/script.db']) {
    assert.ok((await lstat(join(root, f))).isFile(), f);
  }
  const bundle = await readFile(join(root, 'etc/ssl/certs/ca-certificates.crt'), 'utf8');
  assert.ok((bundle.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length > 100, 'the CA bundle');
  assert.equal(await readlink(join(root, 't')), 'share/terminfo');
  assert.equal(await readlink(join(root, 'magic.mgc')), 'share/misc/magic.mgc');
  assert.equal(await readlink(join(root, 'l')), 'etc/ltrace.conf');
  assert.ok((await lstat(join(root, 'etc/ltrace.conf'))).isFile());
  assert.equal(await readlink(join(root, 'r')), 'etc/bashrc');
  const gconv = (await entries(join(root, 'lib'))).filter((n) => /gconv/i.test(n));
  assert.deepEqual(gconv, []);

  const manifest = JSON.parse(await readFile(join(root, 'MANIFEST.json'), 'utf8'));
  assert.equal(manifest.profile, 'full');
  assert.deepEqual(manifest.tools, bin);
  assert.equal(manifest.built, '2023-11-14T22:13:20.000Z');
  const names = manifest.packages.map((p: { name: string }) => p.name);
  for (const p of ['bash', 'gdb-minimal', 'curl', 'libc6', 'libssl3', 'busybox-static']) assert.ok(names.includes(p), p);
  for (const p of ['perl-base', 'libpam0g', 'debconf', 'libelogind0']) assert.ok(!names.includes(p), p);
  for (const p of manifest.packages) assert.match(p.version, /^[0-9]/, p.name);
  assert.equal(manifest.added, undefined);
  assert.equal(manifest.fromDir, undefined);
});

test('minimal: the tools of tools.txt plus busybox, relocated', async (t) => {
  if (!ready(t)) return;
  const root = await minimalTree();
  const bin = await entries(join(root, 'bin'));
  const own: string[] = [];
  for (const name of bin) {
    const st = await lstat(join(root, 'bin', name));
    if (!st.isSymbolicLink() || (await readlink(join(root, 'bin', name))) !== 'busybox') own.push(name);
  }
  assert.deepEqual(own, ['bash', 'busybox', 'free', 'fuser', 'getent', 'ip', 'less', 'lsof', 'nsenter', 'pager', 'pgrep', 'pkill', 'pmap', 'ps', 'pstree', 'setpriv', 'sh', 'ss', 'strace', 'top']);
  await checkRelocated(root);
  for (const absent of ['gdb', 'curl', 'tcpdump', 'htop']) assert.ok(!bin.includes(absent), absent);
  const manifest = JSON.parse(await readFile(join(root, 'MANIFEST.json'), 'utf8'));
  assert.equal(manifest.profile, 'minimal');
  const mib = (await minimalImage()).sizeBytes / 1048576;
  t.diagnostic(`minimal: ${mib.toFixed(1)} MiB`);
});

test('a rebuild of full is byte-identical', async (t) => {
  if (!ready(t)) return;
  const first = await fullImage();
  const again = await buildImage({ profile: 'full', output: join(work, 'full-again.img'), debCache });
  assert.equal(again.sha256, first.sha256);
});

test('--add takes a package in with its libraries', async (t) => {
  if (!ready(t)) return;
  await minimalImage(); // its .deb files are there already
  const r = await buildImage({ profile: 'minimal', add: ['jq'], output: join(work, 'minimal-jq.img'), debCache });
  assert.notEqual(r.sha256, (await minimalImage()).sha256);
  assert.ok(r.packages.some((p) => p.name === 'jq'));
  assert.ok(r.packages.some((p) => p.name === 'libjq1'));
  assert.ok(r.packages.some((p) => p.name === 'libonig5'));
  const root = await unpack(r.path, 'minimal-jq-tree');
  const lib = await entries(join(root, 'lib'));
  assert.ok(lib.includes('libjq.so.1'), String(lib));
  assert.ok(lib.includes('libonig.so.5'), String(lib));
  const jq = readElf(await readFile(join(root, 'bin', 'jq')));
  assert.equal(jq?.interp, INTERP);
  assert.equal(jq?.rpath, RPATH);
  await checkRelocated(root);
  assert.equal(await runInTree(root, 'jq', ['-n', '1+1']), '2');
  const manifest = JSON.parse(await readFile(join(root, 'MANIFEST.json'), 'utf8'));
  assert.deepEqual(manifest.added, ['jq']);
  assert.ok(manifest.tools.includes('jq'));
});

test('--from-dir is copied as it is over the profile; a binary for another loader fails the build', async (t) => {
  if (!ready(t)) return;
  const extra = join(work, 'extra');
  await mkdir(join(extra, 'bin'), { recursive: true });
  await mkdir(join(extra, 'share', 'notes'), { recursive: true });
  await writeFile(join(extra, 'bin', 'hello'), '#!/dev/crashcart/bin/sh\necho hello from the toolkit\n', { mode: 0o755 });
  await symlink('hello', join(extra, 'bin', 'ls')); // replaces the busybox link
  await writeFile(join(extra, 'share', 'notes', 'README'), 'notes\n');
  const r = await buildImage({ profile: 'static', fromDir: extra, output: join(work, 'static-extra.img'), debCache });
  const root = await unpack(r.path, 'static-extra-tree');
  assert.equal(await readFile(join(root, 'bin', 'hello'), 'utf8'), '#!/dev/crashcart/bin/sh\necho hello from the toolkit\n');
  assert.equal(((await lstat(join(root, 'bin', 'hello'))).mode & 0o777).toString(8), '755');
  assert.equal(await readlink(join(root, 'bin', 'ls')), 'hello');
  assert.equal(await readFile(join(root, 'share', 'notes', 'README'), 'utf8'), 'notes\n');
  assert.equal(await readlink(join(root, 'bin', 'cat')), 'busybox', 'the profile is still there');
  const manifest = JSON.parse(await readFile(join(root, 'MANIFEST.json'), 'utf8'));
  assert.equal(manifest.fromDir.files, 3);
  assert.match(manifest.fromDir.sha256, /^[0-9a-f]{64}$/);
  assert.ok(manifest.tools.includes('hello'));

  // the host's own programs load the host's loader: not for the toolkit
  const bad = join(work, 'bad');
  await mkdir(join(bad, 'bin'), { recursive: true });
  copyFileSync('/bin/true', join(bad, 'bin', 'hosttrue'));
  await assert.rejects(buildImage({ profile: 'static', fromDir: bad, output: join(work, 'bad.img'), debCache }), {
    code: 'EBUILD',
    message: "bin/hosttrue loads /lib64/ld-linux-x86-64.so.2, not the toolkit's /dev/crashcart/lib/ld-linux-x86-64.so.2",
  });
  assert.ok(!(await entries(work)).includes('bad.img'));

  // a program built for the prefix whose library is not in lib/
  const orphan = join(work, 'orphan');
  await mkdir(join(orphan, 'bin'), { recursive: true });
  copyFileSync('/bin/true', join(orphan, 'bin', 'orphan'));
  await execa('patchelf', ['--set-interpreter', INTERP, '--force-rpath', '--set-rpath', RPATH, '--add-needed', 'libnowhere.so.3', join(orphan, 'bin', 'orphan')]);
  await assert.rejects(buildImage({ profile: 'minimal', fromDir: orphan, output: join(work, 'orphan.img'), debCache }), {
    code: 'EBUILD',
    message: 'bin/orphan needs libnowhere.so.3, which is not in lib/',
  });
});

test("full's shell reads the toolkit's bashrc, not the container's", async (t) => {
  if (!ready(t) || !requireCommand(t, 'chroot')) return;
  // a fake container root with the image's contents at /dev/crashcart
  const root = join(work, 'chroot');
  await mkdir(join(root, 'dev', 'crashcart'), { recursive: true });
  await mkdir(join(root, 'etc'));
  await mkdir(join(root, 'root'));
  await writeFile(join(root, 'etc', 'bash.bashrc'), 'echo CONTAINER-BASHRC\n');
  await execa('debugfs', ['-R', `rdump / ${join(root, 'dev', 'crashcart')}`, (await fullImage()).path], { stdin: 'ignore' });
  const chroot = (await execa('sh', ['-c', 'command -v chroot'])).stdout;
  const script = 'echo "P=$PATH"; echo "T=$TERMINFO_DIRS"; echo "M=$MAGIC"; echo "L=$(command -v ls)"; file -b /dev/crashcart/bin/bash | cut -d, -f1; exit\n';
  const r = await execa(chroot, [root, '/dev/crashcart/bin/bash', '--rcfile', '/dev/crashcart/etc/bashrc', '-i'], {
    input: script,
    env: { PATH: '/usr/bin:/bin', HOME: '/root', TERM: 'dumb' },
    extendEnv: false,
    reject: false,
  });
  assert.equal(r.exitCode, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /CONTAINER-/);
  assert.match(r.stdout, /^P=\/dev\/crashcart\/bin:\/usr\/bin:\/bin$/m);
  assert.match(r.stdout, /^T=\/dev\/crashcart\/share\/terminfo:$/m);
  assert.match(r.stdout, /^M=\/dev\/crashcart\/share\/misc\/magic\.mgc$/m);
  assert.match(r.stdout, /^L=\/dev\/crashcart\/bin\/ls$/m);
  assert.match(r.stdout, /^ELF 64-bit LSB pie executable$/m);
  assert.match(r.stderr, /\[crashcart [^ ]+ \/\]# /);
  assert.deepEqual(await readdir(join(root, 'root')), [], 'nothing written into the container');
});

test('--add and --from-dir need -o: the cached image of a profile is always the plain one', async (t) => {
  if (!ready(t)) return;
  const r = await runCrashcart(['image', 'build', '--add', 'jq'], { env: { CRASHCART_CACHE_DIR: cache } });
  assert.equal(r.code, 125);
  assert.equal(r.stderr, "crashcart: --add and --from-dir need -o FILE; the cached image of a profile is always the plain profile; graft yours with 'crashcart -i FILE', or let 'crashcart --add PACKAGE TARGET' build and cache the default toolkit plus packages");
});

test('full grafted into a scratch container: its tools run, whatever the container has in /lib', async (t) => {
  if (!ready(t) || !requireCommand(t, 'runc')) return;
  const image = (await fullImage()).path;
  const c = await createScratchContainer({ sleeperPath: await sleeperPath() });
  t.after(() => c.remove());
  // a container whose libraries would break anything that loaded them
  await mkdir(join(c.rootfs, 'lib', 'x86_64-linux-gnu'), { recursive: true });
  await mkdir(join(c.rootfs, 'lib64'), { recursive: true });
  for (const f of ['lib/x86_64-linux-gnu/libc.so.6', 'lib/x86_64-linux-gnu/libtinfo.so.6', 'lib64/ld-linux-x86-64.so.2']) {
    await writeFile(join(c.rootfs, f), 'not a library\n');
  }
  const before = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
  const script = [
    'strace -V | head -1',
    'ss -V',
    'curl --version | head -1',
    'gdb --version | head -1',
    'file -b /dev/crashcart/bin/ls',
    // htop quits at the end of its input; without its terminfo it cannot start at all
    'TERM=xterm-256color timeout 5 htop </dev/null >/dev/null 2>&1; echo htop=$?',
    'TERM=no-such-term timeout 5 htop </dev/null 2>&1 | head -1',
    'ps -o pid=,comm= -p 1',
    // with its prototypes ltrace shows strings, not addresses
    'ltrace -e getenv /dev/crashcart/bin/ls /dev/crashcart 2>&1 >/dev/null | head -1',
  ].join('\n');
  const r = await runCrashcart(['-i', image, c.id, '--env', 'LD_LIBRARY_PATH=/lib/x86_64-linux-gnu', '--', 'bash', '-c', script]);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.split('\n');
  assert.match(out[0]!, /^strace -- version \d/);
  assert.match(out[1]!, /^ss utility, iproute2-/);
  assert.match(out[2]!, /^curl \d+\.\d+\.\d+ .*OpenSSL/);
  assert.match(out[3]!, /^GNU gdb /);
  assert.match(out[4]!, /^ELF 64-bit LSB pie executable, x86-64.*interpreter \/dev\/crashcart\/lib\/ld-linux-x86-64\.so\.2/);
  assert.equal(out[5], 'htop=0', 'htop found its terminfo');
  assert.equal(out[6], 'Error opening terminal: no-such-term.');
  assert.match(out[7]!, /^\s*1 sleeper$/);
  assert.match(out[8]!, /^ls->getenv\("[A-Z_]+"\) +=/);
  assertNoLeaks(before, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
});
