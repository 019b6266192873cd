// The probes of `crashcart doctor`: each looks at the real host (a file, a syscall, a
// runtime's answer) and hands the facts to checks.ts, which decides. All are quick; the
// runtimes, which may be daemons that hang, are asked under a deadline.
import { accessSync, closeSync, constants as fsConstants, existsSync, lstatSync, openSync, readFileSync, realpathSync, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { errnoCode } from '../core/errors.js';
import { onPath } from '../core/host-path.js';
import { parseIdMap, readMountInfo, type MountInfo, NAMESPACES } from '../core/proc.js';
import { stateDir } from '../core/state.js';
import { cacheDir, defaultImagePath, readSidecar } from '../image/cache.js';
import { checkExt3 } from '../image/ext3.js';
import { DEFAULT_PROFILE, loadProfile, recipeDigest } from '../image/profile.js';
import { auditLogPath } from '../core/audit.js';
import { findCached, imagesDir, unsafeReason } from '../image/store.js';
import { fsopen, loopFree } from '../native/index.js';
import { containerdAddress } from '../runtimes/containerd.js';
import { dockerSocket } from '../runtimes/docker.js';
import { withDeadline } from '../runtimes/deadline.js';
import { RUNTIMES, type Runtime } from '../runtimes/index.js';
import {
  BUILD_TOOLS, auditCheck, buildToolsCheck, cacheDirCheck, capabilitiesCheck, cgroupFacts, cgroupsCheck, ext3Check, failure, imageCheck,
  mountApiCheck, namespacesCheck, ok, parseCapEff, parseFilesystems, rootCheck, runtimeCheck, runtimesCheck, stateDirCheck,
  type CheckResult, type ImageFacts, type PathFacts, type RuntimeProbe,
} from './checks.js';

/** How long a runtime may take to list its containers before it counts as hung. */
export const RUNTIME_DEADLINE_MS = 1_000;


const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

function kindOf(st: Stats): 'dir' | 'file' | 'symlink' | 'other' {
  return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other';
}

function pathFacts(path: string): PathFacts {
  try {
    const st = lstatSync(path);
    return { exists: true, kind: kindOf(st), uid: st.uid, mode: st.mode };
  } catch {
    return { exists: false };
  }
}

/** The nearest existing directory at or above `path`. */
function existingAncestor(path: string): string {
  let dir = resolve(path);
  while (!existsSync(dir) && dir !== dirname(dir)) dir = dirname(dir);
  return dir;
}

/** The filesystem type `path` (or the nearest existing directory above it) is on, from mountinfo. */
export function fsTypeOf(path: string, mounts: MountInfo[]): string {
  let real: string;
  try {
    real = realpathSync(existingAncestor(path));
  } catch {
    real = resolve(path);
  }
  let best: MountInfo | undefined;
  for (const m of mounts) {
    const inside = m.mountPoint === '/' || real === m.mountPoint || real.startsWith(`${m.mountPoint}/`);
    // the longest mount point wins; of equal ones the last (it is mounted over the others)
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best?.fsType ?? 'unknown';
}

const writeError = (path: string): string | undefined => {
  try {
    accessSync(path, fsConstants.W_OK);
    return undefined;
  } catch (err) {
    return errnoCode(err) ?? String(err);
  }
};

// --- the host ---------------------------------------------------------------------------

function loopChecks(): CheckResult[] {
  const ctl = '/dev/loop-control';
  try {
    closeSync(openSync(ctl, 'r+'));
  } catch (err) {
    const code = errnoCode(err) ?? String(err);
    const fix = code === 'ENOENT' ? 'modprobe loop (or mknod /dev/loop-control c 10 237)'
      : 'allow it: a device cgroup or LSM profile refuses it (run crashcart on the host, not in a container)';
    return [
      failure('loop-control', `open ${ctl}: ${code}`, fix),
      failure('loop-device', 'not tried: /dev/loop-control cannot be opened', fix),
    ];
  }
  const control = ok('loop-control', `${ctl} opened read-write`);
  let index: number;
  try {
    index = loopFree();
  } catch (err) {
    const code = errnoCode(err) ?? String(err);
    return [control, failure('loop-device', `ioctl LOOP_CTL_GET_FREE: ${code}`, code === 'ENOSPC' ? 'raise max_loop (loop.max_loop=N on the kernel command line), or detach unused loop devices (losetup -D)' : 'check the loop driver (dmesg)')];
  }
  const dev = `/dev/loop${index}`;
  if (!existsSync(dev)) {
    return [control, failure('loop-device', `LOOP_CTL_GET_FREE gave loop${index}, but ${dev} does not exist (no devtmpfs on /dev?)`, `mount devtmpfs on /dev, or mknod ${dev} b 7 ${index}`)];
  }
  return [control, ok('loop-device', `${dev} is free (LOOP_CTL_GET_FREE; nothing bound)`)];
}

/** ext3 and the new mount API: /proc/filesystems before and after fsopen('ext3'). */
function filesystemChecks(): CheckResult[] {
  const before = parseFilesystems(read('/proc/filesystems') ?? '');
  let fsopenError: string | undefined;
  let message: string | undefined;
  try {
    closeSync(fsopen({ fsType: 'ext3' }));
  } catch (err) {
    fsopenError = errnoCode(err) ?? 'error';
    message = (err as Error).message;
  }
  const after = parseFilesystems(read('/proc/filesystems') ?? '');
  return [ext3Check({ before, after, fsopenError }), mountApiCheck(fsopenError, message)];
}

function namespaceCheck(): CheckResult {
  const opened: Record<string, string | undefined> = {};
  for (const ns of NAMESPACES) {
    try {
      closeSync(openSync(`/proc/self/ns/${ns}`, 'r'));
      opened[ns] = undefined;
    } catch (err) {
      opened[ns] = errnoCode(err) ?? String(err);
    }
  }
  return namespacesCheck(opened, existsSync('/proc/self/ns/time'));
}

function cgroupCheck(mounts: MountInfo[]): CheckResult {
  const controllers = (mountPoint: string) => (read(join(mountPoint, 'cgroup.controllers')) ?? '').split(/\s+/).filter(Boolean);
  return cgroupsCheck(cgroupFacts(mounts, controllers));
}

/** Root, capabilities, loop devices, filesystems, namespaces, cgroups: all synchronous and local. */
export function hostChecks(mounts: MountInfo[]): CheckResult[] {
  const euid = process.geteuid?.() ?? -1;
  return [
    rootCheck(euid, parseIdMap(read('/proc/self/uid_map') ?? '')),
    capabilitiesCheck(parseCapEff(read('/proc/self/status') ?? '')),
    ...loopChecks(),
    ...filesystemChecks(),
    namespaceCheck(),
    cgroupCheck(mounts),
  ];
}

// --- runtimes ---------------------------------------------------------------------------

/** Where the daemons are asked, and what to do when one hangs. */
const DAEMONS: Record<string, { endpoint: () => string; fix: (endpoint: string) => string }> = {
  docker: {
    endpoint: () => dockerSocket(),
    fix: (s) => `check that dockerd at ${s} is running and healthy (restart it), or point DOCKER_HOST at the right socket`,
  },
  containerd: {
    endpoint: () => containerdAddress(),
    fix: (s) => `check that containerd at ${s} is running and healthy (restart it), or point CONTAINERD_ADDRESS at the right socket`,
  },
};

async function probeRuntime(r: Runtime, deadlineMs: number): Promise<RuntimeProbe> {
  const daemon = DAEMONS[r.name];
  const endpoint = daemon?.endpoint();
  const t0 = performance.now();
  let answer: RuntimeProbe['answer'];
  try {
    // the signal ends whatever the lookup opened when the deadline passes
    const cs = await withDeadline(deadlineMs, undefined, (signal) => r.list(undefined, signal));
    answer = { state: 'answered', containers: cs.length, running: cs.filter((c) => c.status === 'running').length };
  } catch (err) {
    const e = err as Error & { hint?: string; code?: string };
    answer = e.code === 'ETIMEDOUT' ? { state: 'timeout' } : { state: 'failed', message: e?.message ?? String(err), ...(e?.hint ? { hint: e.hint } : {}) };
  }
  const base = { name: r.name, ms: performance.now() - t0, deadlineMs, ...(endpoint ? { endpoint, hungFix: daemon!.fix(endpoint) } : {}) };
  return { ...base, answer };
}

/** Every runtime present, asked at once, each under its own deadline. */
export async function runtimeChecks(deadlineMs = RUNTIME_DEADLINE_MS): Promise<CheckResult[]> {
  const present = RUNTIMES.filter((r) => r.present());
  const absent = RUNTIMES.filter((r) => !present.includes(r)).map((r) => r.name);
  const probes = await Promise.all(present.map((r) => probeRuntime(r, deadlineMs)));
  return [runtimesCheck(present.map((r) => r.name), absent), ...probes.map(runtimeCheck)];
}

// --- files ------------------------------------------------------------------------------

function cacheCheck(): CheckResult {
  const dir = cacheDir();
  return cacheDirCheck([{ path: dir, facts: pathFacts(dir) }, { path: imagesDir(), facts: pathFacts(imagesDir()) }]);
}

/** The image an attach without -i would use, from the sidecar record (no hashing). */
async function imageFacts(): Promise<ImageFacts> {
  const named = process.env.CRASHCART_IMAGE;
  const url = process.env.CRASHCART_IMAGE_URL;
  let facts: ImageFacts;
  if (named) {
    const source = 'CRASHCART_IMAGE';
    try {
      const cached = await findCached(named);
      facts = { path: cached?.path ?? resolve(named), source, exists: false };
    } catch (err) {
      return { path: named, source, exists: false, lookupError: `CRASHCART_IMAGE=${named}: ${(err as Error).message}` };
    }
    if (!existsSync(facts.path)) {
      return { ...facts, lookupError: `CRASHCART_IMAGE=${named}: no cached image of that name or digest, and no file ${facts.path}` };
    }
  } else if (url) {
    const sha = (process.env.CRASHCART_IMAGE_SHA256 ?? '').toLowerCase().replace(/^sha256:/, '');
    const path = join(imagesDir(), `sha256-${sha}.img`);
    if (!/^[0-9a-f]{64}$/.test(sha)) {
      return { path, source: 'CRASHCART_IMAGE_URL', exists: false, url, lookupError: 'CRASHCART_IMAGE_URL is set but CRASHCART_IMAGE_SHA256 is not a sha256 digest (64 hex digits)' };
    }
    facts = { path, source: 'CRASHCART_IMAGE_URL', exists: false, url };
  } else {
    facts = { path: defaultImagePath(), source: 'default', exists: false };
  }
  const st = pathFacts(facts.path);
  if (!st.exists) return facts;
  facts.exists = true;
  try {
    facts.sizeBytes = lstatSync(realpathSync(facts.path)).size;
  } catch { /* reported below by the trust check */ }
  const sidecar = await readSidecar(facts.path);
  if (sidecar) {
    const s = sidecar as Record<string, unknown>;
    const str = (k: string) => (typeof s[k] === 'string' ? (s[k] as string) : undefined);
    facts.sidecar = Object.fromEntries(['sha256', 'profile', 'recipe', 'built', 'pulled'].flatMap((k) => (str(k) ? [[k, str(k)]] : [])));
    if (facts.source === 'default' && facts.sidecar.recipe) facts.currentRecipe = recipeDigest(await loadProfile(DEFAULT_PROFILE));
  }
  await checkExt3(facts.path).catch((err: Error) => {
    facts.ext3Error = err.message.replace(/^image \S+ is /, '');
  });
  const trust = await unsafeReason(facts.path).catch((err: Error) => ({ real: facts.path, reason: `its trust cannot be checked: ${errnoCode(err) ?? err.message}` }));
  if (trust.reason) Object.assign(facts, { unsafe: trust.reason, real: trust.real });
  return facts;
}

function stateCheck(mounts: MountInfo[]): CheckResult {
  const dir = stateDir();
  return stateDirCheck({ path: dir, facts: pathFacts(dir), fsType: fsTypeOf(dir, mounts) });
}

function auditLogCheck(): CheckResult {
  const file = auditLogPath();
  const dir = dirname(resolve(file));
  const dirFacts = pathFacts(dir);
  const parent = dirFacts.exists ? undefined : existingAncestor(dir);
  return auditCheck({
    file,
    dir,
    dirFacts,
    ...(parent ? { parent } : {}),
    writeError: writeError(parent ?? dir),
    fileFacts: pathFacts(file),
  });
}

function toolsCheck(): CheckResult {
  return buildToolsCheck(Object.keys(BUILD_TOOLS).filter((t) => !onPath(t)));
}

/** Every check, in the order they are shown. */
export async function runChecks(): Promise<CheckResult[]> {
  const mounts = readMountInfo('self');
  // the local checks first (a few ms, synchronous): a runtime's time is then its own
  const host = hostChecks(mounts);
  const [runtimes, image] = await Promise.all([runtimeChecks(), imageFacts().then(imageCheck)]);
  return [...host, ...runtimes, cacheCheck(), image, stateCheck(mounts), auditLogCheck(), toolsCheck()];
}
