// Containers that crashed: a busybox root whose entrypoint (/app/crash.sh) writes its last
// words to /tmp/last-words (and, when it has one, /data/note) and exits 3, as a runc or crun
// bundle, a tar for `docker import` / `podman import`, or a plain directory. And a digest
// of a directory tree, to prove that a sandbox left the container's files as they were.
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import { buildScratchRoot } from '../../src/demo/scratch.js';
import { sleeperPath } from './host.js';
import { waitFor } from './wait.js';

export const CRASHY = {
  hostname: 'crashy',
  env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'CRASHY=1'],
  cwd: '/app',
  uid: 1000,
  gid: 1000,
  entrypoint: ['/bin/sh', '/app/crash.sh'],
  exitCode: 3,
  lastWords: 'last words of crashy\n',
} as const;

const SCRIPT = `#!/bin/sh
echo "last words of $(hostname)" > /tmp/last-words
# a read-only /data (the sandbox's default) must not end the script before its own exit
[ -d /data ] && (echo "note from $(id -u)" > /data/note) 2>/dev/null
exit ${CRASHY.exitCode}
`;

/** A busybox root with /app/crash.sh, an /etc/passwd that names uid 1000 (app) and /data. */
export async function buildCrashyRoot(root: string): Promise<void> {
  await buildScratchRoot(root, {
    sleeperPath: await sleeperPath(),
    busybox: true,
    files: [
      { path: '/app/crash.sh', content: SCRIPT, mode: 0o755 },
      { path: '/etc/passwd', content: `root:x:0:0:root:/root:/bin/sh\napp:x:${CRASHY.uid}:${CRASHY.gid}:app:/app:/bin/sh\n` },
      { path: '/etc/group', content: `root:x:0:\napp:x:${CRASHY.gid}:\n` },
    ],
  });
  await mkdir(join(root, 'data'), { recursive: true });
  await chmod(join(root, 'data'), 0o777);
}

/** The crashy root as a tar in a temporary directory under `workDir`, given to `use`; removed afterwards. */
export async function withCrashyTar<T>(workDir: string, use: (tar: string) => Promise<T>): Promise<T> {
  const work = await mkdtemp(join(workDir, 'crashy-'));
  try {
    const root = join(work, 'root');
    await buildCrashyRoot(root);
    const tar = join(work, 'root.tar');
    await execa('tar', ['--numeric-owner', '-C', root, '-cf', tar, '.'], { stdin: 'ignore' });
    return await use(tar);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The crashy root as image `ref` in a containerd namespace, its config naming crashy's user,
 * working directory, environment and entrypoint (ctr takes them from the image). ctr imports
 * docker-archives only: manifest.json, the config and one layer.
 */
export async function importCrashyImage(ctr: (args: string[]) => Promise<{ code: number; stderr: string }>, workDir: string, ns: string, ref: string): Promise<void> {
  await withCrashyTar(workDir, async (layer) => {
    const work = dirname(layer);
    const diffId = createHash('sha256').update(await readFile(layer)).digest('hex');
    const config = JSON.stringify({
      architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
      os: 'linux',
      config: { User: `${CRASHY.uid}:${CRASHY.gid}`, WorkingDir: CRASHY.cwd, Env: [...CRASHY.env], Cmd: [...CRASHY.entrypoint] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
    });
    const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
    await writeFile(join(work, configName), config);
    await writeFile(join(work, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [ref], Layers: [basename(layer)] }]));
    const tar = join(work, 'image.tar');
    await execa('tar', ['-C', work, '-cf', tar, 'manifest.json', configName, basename(layer)], { stdin: 'ignore' });
    const r = await ctr(['-n', ns, 'images', 'import', tar]);
    if (r.code !== 0) throw new Error(`ctr -n ${ns} images import ${tar} failed: ${r.stderr}`);
  });
}

export interface CrashedOci {
  id: string;
  bundle: string;
  rootfs: string;
  /** a host directory bind-mounted at /data */
  volume: string;
  remove(): Promise<void>;
}

/**
 * A runc or crun container that ran crash.sh and is now stopped (kept in the runtime's state
 * root until remove()). Its bundle holds the root and a host directory bound at /data.
 */
export async function crashedOci(runtime: 'runc' | 'crun', id: string, runtimeRoot: string): Promise<CrashedOci> {
  const bundle = await mkdtemp(join(tmpdir(), `crashcart-crashy-${runtime}-`));
  const rootfs = join(bundle, 'rootfs');
  const volume = join(bundle, 'volume');
  const cli = (args: string[]) => execa(runtime, ['--root', runtimeRoot, ...args], { reject: false, stdin: 'ignore', timeout: 30_000 });
  let ran = false;
  const remove = async () => {
    if (ran) await cli(['delete', '-f', id]);
    await rm(bundle, { recursive: true, force: true });
  };
  try {
    await buildCrashyRoot(rootfs);
    await mkdir(volume);
    await writeFile(join(volume, 'kept'), 'volume data\n');
    await chmod(volume, 0o777);
    await execa('runc', ['spec', '--bundle', bundle], { stdin: 'ignore' });
    const configPath = join(bundle, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8'));
    config.process.terminal = false;
    config.process.args = [...CRASHY.entrypoint];
    config.process.env = [...CRASHY.env];
    config.process.cwd = CRASHY.cwd;
    config.process.user = { uid: CRASHY.uid, gid: CRASHY.gid };
    config.hostname = CRASHY.hostname;
    config.root = { path: rootfs, readonly: false };
    config.mounts.push({ destination: '/data', type: 'bind', source: volume, options: ['rbind', 'rw'] });
    await writeFile(configPath, JSON.stringify(config, null, 2));
    ran = true;
    const log = openSync(join(bundle, 'run.log'), 'a');
    try {
      const args = ['--root', runtimeRoot, 'run', '-d', '--bundle', bundle, id];
      // crun refuses this host's hybrid cgroups unless it cannot see the cgroup2 mount
      const [cmd, argv] = runtime === 'crun'
        ? ['unshare', ['-m', 'sh', '-c', 'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun "$@"', 'crun', ...args]]
        : [runtime, args];
      const code = await new Promise<number | null>((resolve, reject) => {
        const child = spawn(cmd as string, argv as string[], { stdio: ['ignore', log, log] });
        child.once('error', reject);
        child.once('exit', resolve);
      });
      if (code !== 0) throw new Error(`${runtime} run ${id} failed (exit ${code}): ${await readFile(join(bundle, 'run.log'), 'utf8')}`);
    } finally {
      closeSync(log);
    }
    await waitFor(`${runtime} container ${id} stopped`, async () => {
      const r = await cli(['state', id]);
      return r.exitCode === 0 && (JSON.parse(r.stdout) as { status: string }).status === 'stopped';
    });
  } catch (err) {
    await remove();
    throw err;
  }
  return { id, bundle, rootfs, volume, remove };
}

/**
 * Everything of a directory tree that a write could change: each entry's path, type, mode,
 * owner, size, mtime, device numbers, link target and content.
 */
export async function digestTree(dir: string): Promise<string> {
  const h = createHash('sha256');
  async function walk(rel: string): Promise<void> {
    const abs = rel ? join(dir, rel) : dir;
    const st = await lstat(abs);
    h.update(`${rel || '.'}\0${st.mode}\0${st.uid}:${st.gid}\0${st.size}\0${st.mtimeMs}\0${st.rdev}\0`);
    if (st.isSymbolicLink()) h.update(await readlink(abs));
    else if (st.isFile()) h.update(await readFile(abs));
    else if (st.isDirectory()) for (const name of (await readdir(abs)).sort()) await walk(rel ? `${rel}/${name}` : name);
    h.update('\n');
  }
  await walk('');
  return h.digest('hex');
}

/** Digests of several trees at once, by name. */
export async function digests(dirs: Record<string, string>): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [k, d] of Object.entries(dirs)) out[k] = await digestTree(d);
  return out;
}


