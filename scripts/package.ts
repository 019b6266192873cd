// npm run package [-- [deb] [npm] [oci] [-o DIR]]: crashcart as operators install it, from a
// built checkout (npm run build), into dist/packages/ (or DIR):
//   crashcart-<version>.tgz          npm pack; its install script builds the addon (node-gyp)
//   crashcart_<version>_amd64.deb    dpkg-deb: the same files with the addon built here, under
//                                    /usr/lib/crashcart; /usr/bin/crashcart, man page, completion
//   crashcart-<version>-oci.tar      an image for Kubernetes nodes: Node, that tree, nsenter and
//                                    the default toolkit, from Debian packages; an OCI archive
//                                    that is also a docker-archive (docker load, podman load)
// What goes in is one list: the "files" of package.json (what npm pack takes), plus, for
// the .deb and the image, what the npm package's install would build (BUILT) and the
// production dependencies. Whatever the build makes of the CLI, the list says where it is.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip, gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { bashScript, cliSpec, zshScript } from '../src/cli/commands/completion.js';
import { manPage } from '../src/cli/man.js';
import { candidates, fetchDebs } from '../src/image/apt.js';
import { cacheDir, ensureCacheDir } from '../src/image/cache-dir.js';
import { readElf } from '../src/image/elf.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { name: string; version: string; description: string };

/** What the npm package's install builds, and the .deb and the image carry built. */
const BUILT = ['build/Release/crashcart.node', 'build/Release/crashcart-wait', 'build/Release/sleeper'];
/** Generated from the CLI's definitions before anything is packed (they are in "files"). */
const SHARE = {
  man: 'dist/share/man/crashcart.1',
  bash: 'dist/share/completion/crashcart.bash',
  zsh: 'dist/share/completion/_crashcart',
};
/** Where the installed tree lives, in the .deb and in the image. */
const LIB = 'usr/lib/crashcart';
/** The image's own toolkit: /var/lib/crashcart is the host's (mounted), so it lives here. */
const IMAGE_TOOLKIT = '/usr/share/crashcart/toolkit.img';
/** Debian packages of the image: Node's and nsenter's libraries (checked: every DT_NEEDED resolves). */
const IMAGE_DEBS = ['libc6', 'libgcc-s1', 'libstdc++6', 'libselinux1', 'libpcre2-8-0'];
/** Programs of the image taken out of Debian packages whole (package, path). */
const IMAGE_PROGRAMS: [string, string][] = [['util-linux', 'usr/bin/nsenter'], ['bash-static', 'bin/bash-static']];
/** The image's entrypoint (run by bash-static: the image has no other shell). */
const IMAGE_ENTRYPOINT = '/usr/lib/crashcart/entrypoint';

// A pod has a cgroup namespace of its own, and cgroup paths read in it are relative to the
// pod's cgroup: crashcart runs in the host's (PID 1's, with the host's PID namespace) unless
// it is there already. Where PID 1's namespaces cannot even be looked at (PID 1 belongs to a
// parent user namespace), there is no other to enter.
const ENTRYPOINT = `#!/bin/bash-static
crashcart=(/usr/bin/node /${LIB}/bin/crashcart)
if [ -e /proc/1/ns/cgroup ] && ! [ /proc/self/ns/cgroup -ef /proc/1/ns/cgroup ]; then
  exec /usr/bin/nsenter --target=1 --cgroup -- "\${crashcart[@]}" "$@"
fi
exec "\${crashcart[@]}" "$@"
`;

function log(line: string): void {
  process.stderr.write(`package: ${line}\n`);
}

async function epoch(): Promise<number> {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  const r = await execa('git', ['log', '-1', '--format=%ct'], { cwd: root, reject: false });
  return r.exitCode === 0 && r.stdout ? Number(r.stdout) : Math.floor(Date.now() / 1000);
}

async function writeGenerated(date: string): Promise<void> {
  const spec = await cliSpec();
  const files: [string, string][] = [[SHARE.man, manPage(spec, pkg.version, date)], [SHARE.bash, bashScript(spec)], [SHARE.zsh, zshScript(spec)]];
  for (const [path, text] of files) {
    await mkdir(join(root, dirname(path)), { recursive: true });
    await writeFile(join(root, path), text);
  }
}

/** The files npm pack takes (package.json's "files", package.json itself, README...). */
async function packFiles(): Promise<string[]> {
  const r = await execa('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root });
  const [info] = JSON.parse(r.stdout) as [{ files: { path: string }[] }];
  return info.files.map((f) => f.path).sort();
}

/** The production dependencies' directories, relative to the checkout. */
async function productionModules(): Promise<string[]> {
  const r = await execa('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, reject: false });
  return r.stdout.split('\n').filter((p) => p && p !== root).map((p) => relative(root, p)).sort();
}

async function copyTree(from: string, to: string, skip: (rel: string) => boolean = () => false, rel = ''): Promise<void> {
  const st = await lstat(from);
  if (st.isSymbolicLink()) {
    await mkdir(dirname(to), { recursive: true });
    await symlink(await readlink(from), to);
  } else if (st.isDirectory()) {
    await mkdir(to, { recursive: true });
    for (const e of await readdir(from)) if (!skip(join(rel, e))) await copyTree(join(from, e), join(to, e), skip, join(rel, e));
  } else {
    await mkdir(dirname(to), { recursive: true });
    await copyFile(from, to);
    await chmod(to, st.mode & 0o111 ? 0o755 : 0o644);
  }
}

/** The installed tree (/usr/lib/crashcart) in `dest`: the pack list, BUILT, production modules. */
async function installTree(dest: string): Promise<void> {
  for (const f of [...(await packFiles()), ...BUILT]) await copyTree(join(root, f), join(dest, f));
  for (const m of await productionModules()) {
    // nested node_modules are listed by themselves
    await copyTree(join(root, m), join(dest, m), (rel) => rel === 'node_modules');
  }
}

/** Every entry under `dir`, deepest first, with a fixed mtime and sane modes. */
async function normalise(dir: string, time: number): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await normalise(p, time);
    if (!e.isSymbolicLink()) await utimes(p, time, time);
  }
  await chmod(dir, 0o755); // mkdtemp's 0700 would become the mode of / on install
  await utimes(dir, time, time);
}

async function du(dir: string): Promise<number> {
  let kib = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) kib += Math.ceil((await stat(join(e.parentPath, e.name))).size / 1024);
  }
  return kib;
}

const POSTRM = `#!/bin/sh
# crashcart's files under /usr go with the package. What it made at run time:
#   /run/crashcart        session state: removed when no target has the toolkit grafted
#   /var/lib/crashcart    the image cache: kept on remove, removed on purge
#   /var/log/crashcart    the audit log: kept on remove (who ran what as root outlives the
#                         tool), removed on purge
set -e
case "$1" in
  remove|purge)
    if [ -d /run/crashcart/targets ] && [ -z "$(ls -A /run/crashcart/targets)" ]; then
      rm -rf /run/crashcart
    elif [ -d /run/crashcart ]; then
      echo "crashcart: /run/crashcart kept: a target still has the toolkit grafted (crashcart -u, or reinstall and run crashcart gc)" >&2
    fi ;;
esac
if [ "$1" = purge ]; then
  rm -rf /var/lib/crashcart /var/log/crashcart
fi
exit 0
`;

const PRERM = `#!/bin/sh
# Grafts whose sessions have all ended are taken out while crashcart is still there to do it.
set -e
if [ "$1" = remove ] && [ -d /run/crashcart ]; then
  /usr/bin/crashcart gc --no-audit >/dev/null 2>&1 || true
fi
exit 0
`;

async function buildDeb(out: string, time: number): Promise<string> {
  const stage = await mkdtemp(join(tmpdir(), 'crashcart-deb-'));
  try {
    const lib = join(stage, LIB);
    await installTree(lib);
    // Depends: nodejs, whose node is /usr/bin/node: no /usr/bin/env and search of PATH on every run
    for (const bin of ['bin/crashcart', 'bin/kubectl-crashcart']) {
      const text = await readFile(join(lib, bin), 'utf8');
      if (!text.startsWith('#!/usr/bin/env node\n')) throw new Error(`${bin} does not start with #!/usr/bin/env node`);
      await writeFile(join(lib, bin), `#!/usr/bin/node\n${text.slice(text.indexOf('\n') + 1)}`);
    }
    await mkdir(join(stage, 'usr/bin'), { recursive: true });
    await symlink('../lib/crashcart/bin/crashcart', join(stage, 'usr/bin/crashcart'));
    await symlink('../lib/crashcart/bin/kubectl-crashcart', join(stage, 'usr/bin/kubectl-crashcart'));
    const share = join(stage, 'usr/share');
    await mkdir(join(share, 'man/man1'), { recursive: true });
    await writeFile(join(share, 'man/man1/crashcart.1.gz'), gzipSync(await readFile(join(root, SHARE.man)), { level: 9 }));
    await mkdir(join(share, 'bash-completion/completions'), { recursive: true });
    await copyFile(join(root, SHARE.bash), join(share, 'bash-completion/completions/crashcart'));
    await mkdir(join(share, 'zsh/vendor-completions'), { recursive: true });
    await copyFile(join(root, SHARE.zsh), join(share, 'zsh/vendor-completions/_crashcart'));
    await mkdir(join(share, 'doc/crashcart'), { recursive: true });
    await writeFile(join(share, 'doc/crashcart/copyright'), `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: crashcart\n\nFiles: *\nLicense: Apache-2.0\n On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n`);

    const sums: string[] = [];
    for (const e of await readdir(stage, { withFileTypes: true, recursive: true })) {
      if (!e.isFile()) continue;
      const p = join(e.parentPath, e.name);
      sums.push(`${createHash('md5').update(await readFile(p)).digest('hex')}  ${relative(stage, p)}`);
    }
    const size = await du(stage);
    const debian = join(stage, 'DEBIAN');
    await mkdir(debian);
    await writeFile(join(debian, 'md5sums'), `${sums.sort().join('\n')}\n`);
    await writeFile(join(debian, 'control'), [
      `Package: ${pkg.name}`,
      `Version: ${pkg.version}`,
      'Architecture: amd64',
      'Maintainer: crashcart developers <crashcart@localhost>',
      `Installed-Size: ${size}`,
      'Depends: nodejs (>= 20), e2fsprogs',
      'Recommends: patchelf, runc',
      'Section: admin',
      'Priority: optional',
      `Description: ${pkg.description.toLowerCase().replace(/^graft/, 'graft')}`,
      ' crashcart attaches a read-only ext3 toolkit image to a loop device, grafts it at',
      " /dev/crashcart inside a running container's mount namespace and runs a shell",
      " there, in all of the container's namespaces: runc, crun, Docker, Podman,",
      ' containerd, Kubernetes pods, LXC, systemd-nspawn or a plain PID. The toolkit is',
      ' built from Debian packages on first use (patchelf relocates it); runc is for',
      ' crashcart demo.',
      '',
    ].join('\n'));
    await writeFile(join(debian, 'postrm'), POSTRM, { mode: 0o755 });
    await writeFile(join(debian, 'prerm'), PRERM, { mode: 0o755 });
    await normalise(stage, time);
    const deb = join(out, `${pkg.name}_${pkg.version}_amd64.deb`);
    await execa('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { env: { SOURCE_DATE_EPOCH: String(time) } });
    return deb;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

async function buildNpm(out: string): Promise<string> {
  const r = await execa('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], { cwd: root });
  const [info] = JSON.parse(r.stdout) as [{ filename: string }];
  return join(out, info.filename);
}

// ---- the OCI image ----

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Every DT_NEEDED of the ELF files `programs` must be found in the tree's library directories. */
async function checkLibraries(tree: string, programs: string[]): Promise<void> {
  const dirs = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'];
  const seen = new Set<string>();
  const queue = programs.map((p) => join(tree, p));
  while (queue.length) {
    const file = queue.shift()!;
    const info = readElf(await readFile(file), file);
    for (const lib of info?.needed ?? []) {
      if (seen.has(lib)) continue;
      seen.add(lib);
      const found = await Promise.all(dirs.map((d) => stat(join(tree, d, lib)).then(() => join(tree, d, lib), () => undefined)));
      const hit = found.find(Boolean);
      if (!hit) throw new Error(`${relative(tree, file)} needs ${lib}, which none of ${IMAGE_DEBS.join(', ')} provides; add its package to IMAGE_DEBS`);
      queue.push(hit);
    }
  }
}

async function imageRoot(rootfs: string): Promise<void> {
  const debsDir = join(cacheDir(), 'debs');
  await ensureCacheDir();
  await ensureCacheDir(debsDir);
  const names = [...IMAGE_DEBS, ...IMAGE_PROGRAMS.map(([p]) => p)];
  const debs = await fetchDebs(await candidates(names), debsDir);
  for (const [i, name] of names.entries()) {
    if (IMAGE_DEBS.includes(name)) {
      await execa('dpkg', ['-x', debs[i]!, rootfs]);
      continue;
    }
    const tmp = await mkdtemp(join(tmpdir(), 'crashcart-deb-x-'));
    try {
      await execa('dpkg', ['-x', debs[i]!, tmp]);
      for (const [, path] of IMAGE_PROGRAMS.filter(([p]) => p === name)) await copyTree(join(tmp, path), join(rootfs, path));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  // Debian's docs and locales have no use in the image
  for (const d of ['usr/share/doc', 'usr/share/lintian', 'usr/share/locale', 'usr/share/man']) await rm(join(rootfs, d), { recursive: true, force: true });
  await copyTree(process.execPath, join(rootfs, 'usr/bin/node'));
  await installTree(join(rootfs, LIB));
  await symlink('../lib/crashcart/bin/crashcart', join(rootfs, 'usr/bin/crashcart'));
  await writeFile(join(rootfs, IMAGE_ENTRYPOINT.slice(1)), ENTRYPOINT, { mode: 0o755 });
  await checkLibraries(rootfs, ['usr/bin/node', 'usr/bin/nsenter', `${LIB}/build/Release/crashcart.node`]);

  // the toolkit an attach on this host would use: CRASHCART_IMAGE, else the cached default
  // (built when needed)
  const { resolveImage } = await import('../src/image/cache.js');
  const toolkit = await resolveImage({ image: process.env.CRASHCART_IMAGE, progress: log });
  await copyTree(toolkit.path, join(rootfs, IMAGE_TOOLKIT.slice(1)));
  await copyTree(`${toolkit.path}.json`, join(rootfs, `${IMAGE_TOOLKIT.slice(1)}.json`)).catch(() => undefined);
  await chmod(join(rootfs, IMAGE_TOOLKIT.slice(1)), 0o644);

  for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'etc', 'var/lib/crashcart', 'var/log/crashcart']) await mkdir(join(rootfs, d), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await symlink('../run', join(rootfs, 'var/run'));
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
}

async function buildOci(out: string, time: number): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'crashcart-oci-'));
  try {
    const rootfs = join(work, 'rootfs');
    await mkdir(rootfs);
    await imageRoot(rootfs);
    await normalise(rootfs, time);
    await chmod(join(rootfs, 'tmp'), 0o1777);
    const blobs = join(work, 'archive', 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });

    // the layer: one tar of the root, root-owned, sorted, then gzip
    const layerTar = join(work, 'layer.tar');
    await execa('tar', ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', `--mtime=@${time}`, '--format=posix',
      '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '-C', rootfs, '-cf', layerTar, '.']);
    const diffId = await sha256(layerTar);
    const layerGz = join(work, 'layer.tar.gz');
    await pipeline(createReadStream(layerTar), createGzip({ level: 6 }), createWriteStream(layerGz));
    const layerDigest = await sha256(layerGz);
    const layerSize = (await stat(layerGz)).size;
    await execa('mv', [layerGz, join(blobs, layerDigest)]);
    await rm(layerTar);

    const created = new Date(time * 1000).toISOString();
    const config = {
      created,
      architecture: 'amd64',
      os: 'linux',
      config: {
        // crashcart in the host's cgroup namespace (ENTRYPOINT)
        Entrypoint: [IMAGE_ENTRYPOINT],
        Cmd: ['--help'],
        Env: ['PATH=/usr/bin:/usr/sbin:/bin:/sbin', `CRASHCART_IMAGE=${IMAGE_TOOLKIT}`],
        WorkingDir: '/',
        Labels: { 'org.opencontainers.image.title': 'crashcart', 'org.opencontainers.image.version': pkg.version },
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
      history: [{ created, created_by: 'npm run package (scripts/package.ts)' }],
    };
    const blob = async (text: string) => {
      const digest = createHash('sha256').update(text).digest('hex');
      await writeFile(join(blobs, digest), text);
      return { digest, size: Buffer.byteLength(text) };
    };
    const cfg = await blob(JSON.stringify(config));
    const manifest = await blob(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${cfg.digest}`, size: cfg.size },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${layerDigest}`, size: layerSize }],
    }));
    const ref = `crashcart:${pkg.version}`;
    const archive = join(work, 'archive');
    await writeFile(join(archive, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(join(archive, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{
        mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${manifest.digest}`, size: manifest.size,
        annotations: { 'io.containerd.image.name': `docker.io/library/${ref}`, 'org.opencontainers.image.ref.name': pkg.version },
      }],
    }));
    // docker load (before Docker 25) reads manifest.json, the docker-archive index
    await writeFile(join(archive, 'manifest.json'), JSON.stringify([{ Config: `blobs/sha256/${cfg.digest}`, RepoTags: [ref], Layers: [`blobs/sha256/${layerDigest}`] }]));
    await normalise(archive, time);
    const file = join(out, `${pkg.name}-${pkg.version}-oci.tar`);
    await execa('tar', ['--sort=name', '--numeric-owner', '--owner=0', '--group=0', `--mtime=@${time}`, '-C', archive, '-cf', file, 'oci-layout', 'index.json', 'manifest.json', 'blobs']);
    return file;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<void> {
  let out = join(root, 'dist', 'packages');
  const kinds = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-o') out = argv[++i]!;
    else if (['deb', 'npm', 'oci'].includes(argv[i]!)) kinds.add(argv[i]!);
    else throw new Error(`unknown argument '${argv[i]}': give deb, npm, oci and -o DIR`);
  }
  if (!kinds.size) ['npm', 'deb', 'oci'].forEach((k) => kinds.add(k));
  for (const f of BUILT) await stat(join(root, f)).catch(() => { throw new Error(`${f} is not built: run 'npm run build' first`); });
  await mkdir(out, { recursive: true });
  const time = await epoch();
  await writeGenerated(new Date(time * 1000).toISOString().slice(0, 10));
  const made: string[] = [];
  const t0 = Date.now();
  if (kinds.has('npm')) made.push(await buildNpm(out));
  if (kinds.has('deb')) made.push(await buildDeb(out, time));
  if (kinds.has('oci')) made.push(await buildOci(out, time));
  for (const f of made) log(`${f} (${((await stat(f)).size / 2 ** 20).toFixed(1)} MiB)`);
  log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  process.stderr.write(`package: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
