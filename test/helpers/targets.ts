// The kinds of real runc container the toolkit must work in, each running the test HTTP server
// (test/fixtures/httpd.c) as PID 1, with a static DNS server (test/fixtures/dnsd.c) at
// /bin/dnsd for the tests to start:
//   scratch  a static httpd and nothing else
//   glibc    "distroless": a dynamic httpd, the host's loader and libc, /etc/passwd and group
//   musl     a musl-dynamic httpd and the files of Debian's musl package (an Alpine-like root)
//   nonroot  the glibc root with its process run as uid/gid 65532 (distroless's nonroot)
// `plant` adds hostile glibc files (garbage libc.so.6, ld-linux, ld.so.cache, a garbage
// LD_LIBRARY_PATH in the process's environment, and a valid but foreign libnuma.so.1) that a
// relocated toolkit must never load.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { lstat, readFile, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, posix } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer, type RootfsFile, type ScratchContainer, type ScratchOptions } from '../../src/demo/scratch.js';
import { projectRoot } from './host.js';
import { waitFor } from './wait.js';

export type TargetKind = 'scratch' | 'glibc' | 'musl' | 'nonroot';

export const TARGET_KINDS: readonly TargetKind[] = ['scratch', 'glibc', 'musl', 'nonroot'];

export const HTTP_PORT = 8080;
/** What httpd answers to every request (test/fixtures/httpd.c). */
export const HTTP_BODY = 'crashcart matrix ok\n';
export const NONROOT_ID = 65532;
const PROGRAM = '/bin/httpd';

type Flavor = 'static' | 'glibc' | 'musl';

const COMPILERS: Record<Flavor, [string, string[]]> = {
  static: ['gcc', ['-static']],
  glibc: ['gcc', []],
  musl: ['musl-gcc', []],
};

let buildDir: string | undefined;
const compiled = new Map<Flavor, Promise<string>>();

/** A private directory for the programs compiled here, removed when the process exits. */
async function buildDirectory(): Promise<string> {
  if (!buildDir) {
    const dir = mkdtempSync(join(tmpdir(), 'crashcart-httpd-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    buildDir = dir;
  }
  return buildDir;
}

/** httpd compiled for one flavor, once per test process, in a temp dir removed at exit. */
export function httpdPath(flavor: Flavor): Promise<string> {
  let p = compiled.get(flavor);
  if (!p) {
    p = (async () => {
      const source = join(projectRoot(), 'test/fixtures/httpd.c');
      const out = join(await buildDirectory(), `httpd-${flavor}`);
      const [cc, flags] = COMPILERS[flavor];
      await execa(cc, [...flags, '-O2', '-g', '-Wall', '-Wextra', '-o', out, source], { stdin: 'ignore' }).catch((err: Error) => {
        throw new Error(`compiling ${source} with ${cc} ${flags.join(' ')} failed: ${err.message}`);
      });
      return out;
    })();
    compiled.set(flavor, p);
  }
  return p;
}

/** Where the tests find dnsd in every target: static, so it loads nothing in any of them. */
export const DNSD = '/bin/dnsd';
/** What dnsd answers to every A query. */
export const DNSD_ADDRESS = '192.0.2.53';

let dnsd: Promise<string> | undefined;

/** test/fixtures/dnsd.c built with gcc -static, once per test process. */
function dnsdPath(): Promise<string> {
  dnsd ??= (async () => {
    const source = join(projectRoot(), 'test/fixtures/dnsd.c');
    const out = join(await buildDirectory(), 'dnsd');
    await execa('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-o', out, source], { stdin: 'ignore' }).catch((err: Error) => {
      throw new Error(`compiling ${source} with gcc -static failed: ${err.message}`);
    });
    return out;
  })();
  return dnsd;
}

/** A host file and the symlinks leading to it, as rootfs entries at the same paths. */
async function hostFile(path: string, out: RootfsFile[]): Promise<void> {
  for (let hops = 0; hops < 8; hops++) {
    if (out.some((f) => f.path === path)) return;
    const st = await lstat(path);
    if (!st.isSymbolicLink()) {
      out.push({ path, source: path, mode: st.mode & 0o7777 });
      return;
    }
    const to = await readlink(path);
    out.push({ path, symlink: to });
    path = isAbsolute(to) ? to : posix.join(dirname(path), to);
  }
  throw new Error(`too many symlinks at ${path}`);
}

/** The loader and libraries a glibc-dynamic program needs, from the host's ldd. */
async function glibcLibraries(binary: string): Promise<RootfsFile[]> {
  const { stdout } = await execa('ldd', [binary], { stdin: 'ignore' });
  const out: RootfsFile[] = [];
  for (const line of stdout.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s+)?(\/\S+)\s+\(0x/.exec(line);
    if (m) await hostFile(m[1]!, out);
  }
  if (!out.some((f) => f.path.includes('/libc.so.6'))) throw new Error(`ldd ${binary} named no libc.so.6:\n${stdout}`);
  return out;
}

/** The run-time files of Debian's musl package (not its docs or helper script). */
async function muslFiles(): Promise<RootfsFile[]> {
  const { stdout } = await execa('dpkg', ['-L', 'musl'], { stdin: 'ignore', reject: false });
  const out: RootfsFile[] = [];
  for (const path of stdout.split('\n')) {
    if (!/^\/(usr\/)?(lib|etc)\//.test(path)) continue;
    const st = await lstat(path).catch(() => undefined);
    if (st && !st.isDirectory()) await hostFile(path, out);
  }
  if (!out.some((f) => f.path.endsWith('/ld-musl-x86_64.so.1'))) throw new Error("Debian's musl package is not installed (apt-get install musl-tools)");
  return out;
}

/** /etc as distroless has it: root and nonroot (65532) users and groups. */
function distrolessEtc(): RootfsFile[] {
  return [
    { path: '/etc/passwd', content: `root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:${NONROOT_ID}:${NONROOT_ID}:nonroot:/home/nonroot:/sbin/nologin\n` },
    { path: '/etc/group', content: `root:x:0:\nnonroot:x:${NONROOT_ID}:\n` },
  ];
}

/** Garbage with an ELF magic, so a loader that opens it fails loudly instead of skipping it. */
function garbage(): Uint8Array {
  return Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), randomBytes(4089)]);
}

/** Libraries a toolkit tool might otherwise pick up from the container. */
const PLANTED_LIBS = [
  'libc.so.6', 'libm.so.6', 'libresolv.so.2', 'libtinfo.so.6', 'libncursesw.so.6', 'libselinux.so.1', 'libz.so.1',
  'libpcre2-8.so.0', 'libcrypto.so.3', 'libssl.so.3', 'libcurl.so.4', 'libreadline.so.8', 'libmagic.so.1',
  'libpcap.so.0.8', 'libelf.so.1', 'libgcc_s.so.1', 'libstdc++.so.6', 'libthread_db.so.1', 'libnss_files.so.2',
  // dlopen()ed by name (procps' libproc2 tries libnuma.so, then libnuma.so.1)
  'libnuma.so',
];

/** A valid library (test/fixtures/foreign.c) planted where garbage would just be skipped. */
const FOREIGN_LIB = 'libnuma.so.1';

export const GARBAGE_LIBRARY_PATH = '/garbage';

let foreignLib: Promise<string> | undefined;

function foreignLibPath(): Promise<string> {
  foreignLib ??= (async () => {
    const source = join(projectRoot(), 'test/fixtures/foreign.c');
    const out = join(await buildDirectory(), 'foreign.so');
    await execa('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-o', out, source], { stdin: 'ignore' });
    return out;
  })();
  return foreignLib;
}

async function plantedFiles(): Promise<RootfsFile[]> {
  const foreign = await foreignLibPath();
  const out: RootfsFile[] = [
    { path: '/lib64/ld-linux-x86-64.so.2', content: garbage(), mode: 0o755 },
    { path: '/etc/ld.so.cache', content: garbage() },
  ];
  for (const dir of ['/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', GARBAGE_LIBRARY_PATH]) {
    for (const lib of PLANTED_LIBS) out.push({ path: `${dir}/${lib}`, content: garbage(), mode: 0o755 });
    out.push({ path: `${dir}/${FOREIGN_LIB}`, source: foreign, mode: 0o755 });
  }
  return out;
}

export interface TargetOptions {
  plant?: boolean;
  /** more ScratchOptions (baseDir, id...) */
  scratch?: Partial<ScratchOptions>;
}

export interface Target {
  kind: TargetKind;
  planted: boolean;
  /** the container's hostname, also the prompt of an interactive crashcart there */
  hostname: string;
  /** the user PID 1 runs as */
  uid: number;
  container: ScratchContainer;
}

const BASE_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];

/** Starts one target container running httpd on 127.0.0.1:HTTP_PORT. */
export async function startTarget(kind: TargetKind, opts: TargetOptions = {}): Promise<Target> {
  const flavor: Flavor = kind === 'scratch' ? 'static' : kind === 'musl' ? 'musl' : 'glibc';
  const httpd = await httpdPath(flavor);
  const files: RootfsFile[] = [{ path: DNSD, source: await dnsdPath(), mode: 0o755 }];
  if (flavor === 'glibc') files.push(...(await glibcLibraries(httpd)), ...distrolessEtc());
  if (flavor === 'musl') files.push(...(await muslFiles()));
  const env = [...BASE_ENV];
  if (opts.plant) {
    files.push(...(await plantedFiles()));
    env.push(`LD_LIBRARY_PATH=${GARBAGE_LIBRARY_PATH}`);
  }
  const uid = kind === 'nonroot' ? NONROOT_ID : 0;
  const hostname = `matrix-${kind}`;
  const container = await createScratchContainer({
    sleeperPath: httpd,
    programPath: PROGRAM,
    args: [PROGRAM, String(HTTP_PORT)],
    files,
    env,
    hostname,
    ...(uid ? { user: { uid, gid: uid } } : {}),
    ...opts.scratch,
  });
  try {
    await waitListening(container.pid);
  } catch (err) {
    await container.remove();
    throw err;
  }
  return { kind, planted: Boolean(opts.plant), hostname, uid, container };
}

/** httpd binds right after exec; wait until its socket listens (in its own net namespace). */
async function waitListening(pid: number): Promise<void> {
  // /proc/PID/net/tcp: local address 0100007F:1F90 (127.0.0.1:8080), state 0A (LISTEN)
  const want = `0100007F:${HTTP_PORT.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A`;
  await waitFor(`httpd (pid ${pid}) listens on 127.0.0.1:${HTTP_PORT}`,
    async () => (await readFile(`/proc/${pid}/net/tcp`, 'utf8').catch(() => '')).includes(want));
}
