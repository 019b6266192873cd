// What `crashcart doctor` concludes from what it found on the host: pure functions over
// /proc text and file facts, so every decision is tested without root. The probes that
// gather the facts are in probes.ts.
import { NAMESPACES, type MountInfo } from '../core/proc.js';

export type Status = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  check: string;
  status: Status;
  detail: string;
  /** what to do about a warn or a fail */
  fix?: string;
}

export const ok = (check: string, detail: string): CheckResult => ({ check, status: 'ok', detail });
export const warning = (check: string, detail: string, fix: string): CheckResult => ({ check, status: 'warn', detail, fix });
export const failure = (check: string, detail: string, fix: string): CheckResult => ({ check, status: 'fail', detail, fix });

/** 0 when everything an attach needs is there (warnings allowed), else 1. */
export const doctorExitCode = (results: CheckResult[]): number => (results.some((r) => r.status === 'fail') ? 1 : 0);

const RANK: Record<Status, number> = { ok: 0, warn: 1, fail: 2 };

/** One problem found about one thing; several of them make one check. */
interface Problem {
  status: 'warn' | 'fail';
  what: string;
  fix: string;
}

/** The worst of the problems, all of them named; ok with `fine` when there are none. */
function verdict(check: string, subject: string, problems: Problem[], fine: string): CheckResult {
  if (!problems.length) return ok(check, `${subject}: ${fine}`);
  const worst = problems.reduce<Status>((s, p) => (RANK[p.status] > RANK[s] ? p.status : s), 'ok');
  return {
    check,
    status: worst,
    detail: `${subject}: ${problems.map((p) => p.what).join('; ')}`,
    fix: [...new Set(problems.map((p) => p.fix))].join('; '),
  };
}

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(3, '0');

// --- root and capabilities -------------------------------------------------------------

/** The capabilities an attach uses (bits of linux/capability.h) and what for. */
export const CAPABILITIES: { name: string; bit: number; use: string; required: boolean }[] = [
  { name: 'CAP_SYS_ADMIN', bit: 21, use: 'setns, mount and the loop device ioctls', required: true },
  { name: 'CAP_SYS_PTRACE', bit: 19, use: "other users' processes' namespaces and roots in /proc", required: true },
  { name: 'CAP_SYS_CHROOT', bit: 18, use: "chroot into the container's root", required: true },
  { name: 'CAP_SETUID', bit: 7, use: 'running the command as a user', required: true },
  { name: 'CAP_SETGID', bit: 6, use: "setting the command's groups", required: true },
  { name: 'CAP_MKNOD', bit: 27, use: 'the device node of the mknod method; the mount API works without it', required: false },
];

/** CapEff of /proc/PID/status as a bit set; undefined when the line is missing. */
export function parseCapEff(status: string): bigint | undefined {
  const m = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : undefined;
}

/** The names of CAPABILITIES that are in `caps`. */
export function decodeCapabilities(caps: bigint): string[] {
  return CAPABILITIES.filter((c) => (caps >> BigInt(c.bit)) & 1n).map((c) => c.name);
}

export function capabilitiesCheck(caps: bigint | undefined): CheckResult {
  const check = 'capabilities';
  const fix = 'run crashcart as full root on the host, not under a reduced capability set (a container, capsh, a systemd CapabilityBoundingSet)';
  if (caps === undefined) return failure(check, 'no CapEff line in /proc/self/status', fix);
  const have = new Set(decodeCapabilities(caps));
  const missing = CAPABILITIES.filter((c) => !have.has(c.name));
  if (!missing.length) return ok(check, CAPABILITIES.map((c) => c.name).join(' '));
  const detail = `missing ${missing.map((c) => `${c.name} (${c.use})`).join(', ')}`;
  return missing.some((c) => c.required) ? failure(check, detail, fix) : warning(check, detail, fix);
}

/** euid 0 is not enough: root of a user namespace cannot attach loop devices or mount ext3. */
export function rootCheck(euid: number, uidMap: { inside: number; outside: number; count: number }[]): CheckResult {
  if (euid !== 0) return failure('root', `euid ${euid}`, 'run crashcart as root');
  const hostRoot = uidMap.some((m) => m.inside === 0 && m.outside === 0 && m.count >= 1);
  if (hostRoot) return ok('root', "euid 0, the host's root");
  const outside = uidMap.find((m) => m.inside === 0)?.outside;
  return failure('root', `euid 0 in a user namespace (uid 0 is host uid ${outside ?? 'unmapped'}): loop devices and ext3 mounts are refused there`,
    "run crashcart as root in the host's user namespace");
}

// --- kernel ----------------------------------------------------------------------------

/** The filesystem types of /proc/filesystems. */
export function parseFilesystems(text: string): string[] {
  return text.split('\n').map((l) => l.trim().split(/\s+/).pop() ?? '').filter(Boolean);
}

const EXT3_FIX = 'modprobe ext4 (its driver serves ext3 since Linux 4.3), or use a kernel built with CONFIG_EXT4_FS';

/**
 * ext3 before and after the mount API probe asked for it: the kernel loads a filesystem's
 * module on demand (fs-ext3 is an alias of ext4), so a missing entry is not yet a failure.
 */
export function ext3Check(o: { before: string[]; after: string[]; fsopenError?: string }): CheckResult {
  const servedBy = o.after.includes('ext4') ? ' (served by the ext4 driver)' : '';
  if (o.before.includes('ext3')) return ok('ext3', `in /proc/filesystems${servedBy}`);
  if (o.after.includes('ext3')) {
    return ok('ext3', `not in /proc/filesystems until fsopen asked for it: the kernel autoloaded its module${servedBy}, as it will on an attach`);
  }
  if (o.fsopenError === 'ENODEV') {
    return failure('ext3', 'not in /proc/filesystems, and the kernel has no module to load for it (fsopen: ENODEV)', EXT3_FIX);
  }
  return warning('ext3', `not in /proc/filesystems; the kernel may still autoload a module on the first mount (fsopen could not ask: ${o.fsopenError ?? 'unknown'})`,
    `load it now to be sure: ${EXT3_FIX}`);
}

/** fsopen of ext3 (opened and closed): needed for user-namespaced containers and as mknod's fallback. */
export function mountApiCheck(fsopenError?: string, message?: string): CheckResult {
  const check = 'mount-api';
  if (fsopenError === undefined) return ok(check, "fsopen('ext3') opened a filesystem context (closed again)");
  if (fsopenError === 'ENODEV') return failure(check, "fsopen('ext3'): ENODEV: the kernel has no ext3", EXT3_FIX);
  const why = fsopenError === 'ENOSYS' ? 'the kernel (before 5.2) or a seccomp filter has no new mount API'
    : fsopenError === 'EPERM' ? 'refused (a seccomp filter or LSM, or no CAP_SYS_ADMIN)' : message ?? fsopenError;
  return warning(check, `fsopen('ext3'): ${fsopenError}: ${why}; user-namespaced containers cannot be attached, and there is no fallback when mknod fails`,
    'use Linux 5.2 or later without a seccomp filter on fsopen');
}

/** The namespace types crashcart enters (time is listed when the kernel has it, not needed). */
export function namespacesCheck(opened: Record<string, string | undefined>, hasTime: boolean): CheckResult {
  const missing = NAMESPACES.filter((ns) => opened[ns] !== undefined);
  const names = [...NAMESPACES, ...(hasTime ? ['time'] : [])];
  if (!missing.length) return ok('namespaces', `/proc/self/ns: ${names.join(' ')}${hasTime ? '' : ' (no time namespace: not needed)'}`);
  return failure('namespaces', `cannot open ${missing.map((ns) => `/proc/self/ns/${ns} (${opened[ns]})`).join(', ')}`,
    `crashcart enters every namespace of a container: use a kernel with ${missing.map((ns) => `CONFIG_${ns === 'mnt' ? 'NAMESPACES' : `${ns.toUpperCase()}_NS`}`).join(', ')} and /proc mounted`);
}

// --- cgroups ---------------------------------------------------------------------------

export type CgroupLayout = 'v2' | 'v1' | 'hybrid' | 'none';

const V1_CONTROLLERS = new Set(['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'blkio',
  'perf_event', 'hugetlb', 'pids', 'rdma', 'misc']);

export interface CgroupFacts {
  layout: CgroupLayout;
  /** mount points of the v1 hierarchies */
  v1: string[];
  /** mount points of cgroup2 */
  v2: string[];
  /** controllers bound to a v1 hierarchy or enabled at a cgroup2 root */
  controllers: string[];
}

/** The cgroup layout from mountinfo; `v2Controllers` reads cgroup.controllers of a cgroup2 mount. */
export function cgroupFacts(mounts: MountInfo[], v2Controllers: (mountPoint: string) => string[]): CgroupFacts {
  const v1 = mounts.filter((m) => m.fsType === 'cgroup');
  const v2 = [...new Set(mounts.filter((m) => m.fsType === 'cgroup2').map((m) => m.mountPoint))];
  const controllers = new Set<string>();
  for (const m of v1) for (const o of m.superOptions.split(',')) if (V1_CONTROLLERS.has(o)) controllers.add(o);
  for (const p of v2) for (const c of v2Controllers(p)) controllers.add(c);
  const layout: CgroupLayout = v1.length && v2.length ? 'hybrid' : v2.length ? 'v2' : v1.length ? 'v1' : 'none';
  return { layout, v1: [...new Set(v1.map((m) => m.mountPoint))], v2, controllers: [...controllers].sort() };
}

export function cgroupsCheck(f: CgroupFacts): CheckResult {
  const check = 'cgroups';
  const layout = f.layout === 'v2' ? `cgroup v2 only (${f.v2.join(', ')})`
    : f.layout === 'v1' ? `cgroup v1 only (${f.v1.length} hierarchies)`
      : f.layout === 'hybrid' ? `hybrid: ${f.v1.length} v1 hierarchies and cgroup2 at ${f.v2.join(', ')}` : 'no cgroup filesystem mounted';
  if (f.layout === 'none') {
    return warning(check, `${layout}: crashcart cannot join a container's cgroups`, 'mount the cgroup filesystems (or attach with --no-cgroup)');
  }
  const missing = ['pids', 'memory'].filter((c) => !f.controllers.includes(c));
  if (!missing.length) return ok(check, `${layout}; pids and memory controllers visible`);
  return warning(check, `${layout}; no ${missing.join(' or ')} controller visible: a container's ${missing.join(' and ')} limits cannot be read`,
    `mount the ${missing.join(' and ')} controller${missing.length > 1 ? 's' : ''} (cgroup v1) or enable ${missing.length > 1 ? 'them' : 'it'} in cgroup.subtree_control (v2)`);
}

// --- runtimes --------------------------------------------------------------------------

export type RuntimeAnswer =
  | { state: 'answered'; containers: number; running: number }
  | { state: 'failed'; message: string; hint?: string }
  | { state: 'timeout' };

export interface RuntimeProbe {
  name: string;
  /** the socket (or what else) it was asked through, for the messages */
  endpoint?: string;
  /** what to do when its daemon hangs */
  hungFix?: string;
  ms: number;
  deadlineMs: number;
  answer: RuntimeAnswer;
}

const OTHERS_WORK = 'attaches to containers of other runtimes and to PIDs still work';

/** A runtime that does not answer is a warning: the others still work. */
export function runtimeCheck(p: RuntimeProbe): CheckResult {
  const check = `runtime:${p.name}`;
  const a = p.answer;
  if (a.state === 'answered') {
    return ok(check, `${a.containers} container${a.containers === 1 ? '' : 's'} (${a.running} running), answered in ${Math.round(p.ms)} ms`);
  }
  if (a.state === 'timeout') {
    return warning(check, `no answer from ${p.endpoint ?? p.name} within ${p.deadlineMs / 1000} s (its connections were closed); ${OTHERS_WORK}`,
      p.hungFix ?? `check that ${p.name} is healthy`);
  }
  return warning(check, `did not answer: ${a.message}; ${OTHERS_WORK}`, a.hint ?? `check that ${p.name} is healthy`);
}

export function runtimesCheck(present: string[], absent: string[]): CheckResult {
  if (!present.length) {
    return warning('runtimes', `none found (looked for ${absent.join(', ')}): only plain PIDs can be attached`,
      'start the container runtime, or set its socket or state directory (see README: Environment)');
  }
  return ok('runtimes', `found ${present.join(', ')}${absent.length ? `; not here: ${absent.join(', ')}` : ''}`);
}

// --- files -----------------------------------------------------------------------------

/** What lstat said of a path, or that it is not there. */
export type PathFacts = { exists: false } | { exists: true; kind: 'dir' | 'file' | 'symlink' | 'other'; uid: number; mode: number };

/** Where the state directory or a not yet existing one would live: the filesystem's type. */
export interface StateDirFacts {
  path: string;
  facts: PathFacts;
  /** filesystem type of the directory, or of its nearest existing parent */
  fsType: string;
}

const VOLATILE = new Set(['tmpfs', 'ramfs']);

export function stateDirCheck(s: StateDirFacts): CheckResult {
  const { path, facts: f } = s;
  const problems: Problem[] = [];
  if (!VOLATILE.has(s.fsType)) {
    problems.push({
      status: 'warn',
      what: `on ${s.fsType}, not a tmpfs: a reboot does not clear it, and records of containers from before it stay`,
      fix: 'set CRASHCART_STATE_DIR to a directory on a tmpfs (/run is one on most hosts)',
    });
  }
  if (!f.exists) {
    return verdict('state-dir', path, problems, `not created yet (made 0700 by the first attach), on ${s.fsType}`);
  }
  if (f.kind !== 'dir') {
    return verdict('state-dir', path, [{ status: 'fail', what: `it is a ${f.kind}, not a directory`, fix: `remove ${path}, or set CRASHCART_STATE_DIR elsewhere` }], '');
  }
  const fixes: string[] = [];
  const fail: string[] = [];
  if (f.uid !== 0) {
    fail.push(`owned by uid ${f.uid}, not root`);
    fixes.push(`chown root: ${path}`);
  }
  if (f.mode & 0o022) {
    fail.push(`mode ${octal(f.mode)}: others can write the records root acts on (must be 700)`);
    fixes.push(`chmod 700 ${path}`);
  }
  if (fail.length) problems.unshift({ status: 'fail', what: fail.join('; '), fix: fixes.join(' && ') });
  else if ((f.mode & 0o777) !== 0o700) {
    problems.unshift({ status: 'warn', what: `mode ${octal(f.mode)}: others can read which containers have the toolkit (should be 700)`, fix: `chmod 700 ${path}` });
  }
  return verdict('state-dir', path, problems, `root-owned, mode 700, on ${s.fsType}`);
}

/** The cache (or its images/) must be root's alone: root mounts what is in there. */
export function cacheDirCheck(dirs: { path: string; facts: PathFacts }[]): CheckResult {
  const top = dirs[0]!;
  if (!top.facts.exists) return ok('image-cache', `${top.path}: not created yet (made root-only, 0700, by the first build or pull)`);
  const problems: Problem[] = [];
  for (const { path, facts: f } of dirs) {
    if (!f.exists) continue;
    const name = path === top.path ? 'it' : path;
    if (f.kind !== 'dir') {
      problems.push({ status: 'fail', what: `${name} is a ${f.kind}, not a directory`, fix: `remove ${path}, or set CRASHCART_CACHE_DIR elsewhere` });
      continue;
    }
    if (f.uid !== 0) problems.push({ status: 'fail', what: `${name} is owned by uid ${f.uid}, not root`, fix: `chown root: ${path}` });
    if (f.mode & 0o022) {
      problems.push({ status: 'fail', what: `${name} is writable by group or others (mode ${octal(f.mode)}): a non-root user could replace the images root mounts`, fix: `chmod 700 ${path}` });
    }
  }
  return verdict('image-cache', top.path, problems, `root-owned, mode ${top.facts.exists && octal(top.facts.mode)}`);
}

export interface ImageFacts {
  path: string;
  /** where the image attaches use comes from */
  source: 'default' | 'CRASHCART_IMAGE' | 'CRASHCART_IMAGE_URL';
  exists: boolean;
  /** CRASHCART_IMAGE_URL, for the message */
  url?: string;
  sizeBytes?: number;
  /** the sidecar record (.img.json), if there is one */
  sidecar?: { sha256?: string; profile?: string; recipe?: string; built?: string; pulled?: string };
  /** recipeDigest() of the default profile, to tell an outdated default image */
  currentRecipe?: string;
  /** why it is not an ext3 image, if it is not */
  ext3Error?: string;
  /** why a non-root user could change it (store.ts's trust rule), if one could */
  unsafe?: string;
  /** the path the trust rule checked (symlinks resolved) */
  real?: string;
  /** why CRASHCART_IMAGE or CRASHCART_IMAGE_SHA256 names no usable image */
  lookupError?: string;
}

/** The command that lifts unsafeReason()'s `reason` about the image file `real`. */
export function trustFix(real: string, reason: string): string {
  const dir = /^directory (.+) is (owned|writable)/.exec(reason);
  const target = dir?.[1] ?? real;
  const owned = (dir?.[2] ?? (/^it is owned/.test(reason) ? 'owned' : 'writable')) === 'owned';
  return owned ? `chown root: ${target}` : `chmod go-w ${target}${dir ? ' (or chmod +t, for a shared directory like /tmp)' : ''}`;
}

export function imageCheck(i: ImageFacts): CheckResult {
  const check = 'image';
  if (i.lookupError) {
    return failure(check, i.lookupError, i.source === 'CRASHCART_IMAGE_URL' ? "set CRASHCART_IMAGE_SHA256 to the image's digest"
      : "name a cached image (see 'crashcart image ls') or a file, or unset CRASHCART_IMAGE");
  }
  if (!i.exists) {
    if (i.source === 'CRASHCART_IMAGE') {
      return failure(check, `CRASHCART_IMAGE names ${i.path}, which does not exist`, "name a cached image (see 'crashcart image ls') or a file, or unset CRASHCART_IMAGE");
    }
    if (i.source === 'CRASHCART_IMAGE_URL') {
      return warning(check, `${i.path}: not cached yet; the first attach pulls ${i.url}`, `pull it now: crashcart image pull ${i.url} --sha256 ${i.path.replace(/^.*sha256-|\.img$/g, '')}`);
    }
    return warning(check, `${i.path}: no default image cached yet; the first attach builds it (about 20 s, needs Debian's archive, mke2fs and patchelf)`,
      'build it now: crashcart image build');
  }
  const problems: Problem[] = [];
  if (i.unsafe) problems.push({ status: 'fail', what: `${i.unsafe}, so a non-root user could change what root mounts`, fix: trustFix(i.real ?? i.path, i.unsafe) });
  if (i.ext3Error) {
    problems.push(i.source === 'default'
      ? { status: 'warn', what: `damaged (${i.ext3Error}): the next attach rebuilds it`, fix: 'rebuild it now: crashcart image build' }
      : { status: 'fail', what: `not an ext3 image (${i.ext3Error})`, fix: 'build or pull a toolkit image' });
  }
  if (i.source === 'default' && i.sidecar?.recipe !== undefined && i.currentRecipe !== undefined && i.sidecar.recipe !== i.currentRecipe) {
    problems.push({ status: 'warn', what: 'made by another crashcart version: the next attach rebuilds it', fix: 'rebuild it now: crashcart image build' });
  }
  const s = i.sidecar;
  const size = i.sizeBytes === undefined ? '' : `, ${(i.sizeBytes / 1048576).toFixed(1)} MiB`;
  const record = s === undefined ? 'no sidecar record (put there by hand)'
    : [s.profile && `profile ${s.profile}`, s.sha256 && `sha256:${s.sha256.slice(0, 12)}`, (s.built && `built ${s.built}`) || (s.pulled && `pulled ${s.pulled}`)]
      .filter(Boolean).join(', ');
  return verdict(check, `${i.path} (${record}${size})`, problems, 'trusted (root-owned, not writable by others)');
}

export interface AuditFacts {
  file: string;
  dir: string;
  dirFacts: PathFacts;
  /** root's access(W_OK) of the directory, or of the nearest existing parent when it is missing: an errno code */
  writeError?: string;
  /** that nearest existing parent, when the directory is missing */
  parent?: string;
  fileFacts: PathFacts;
}

export function auditCheck(a: AuditFacts): CheckResult {
  const check = 'audit-log';
  const problems: Problem[] = [];
  const d = a.dirFacts;
  const elsewhere = 'or set CRASHCART_AUDIT_LOG to a file in a root-only directory';
  if (!d.exists) {
    if (a.writeError) problems.push({ status: 'warn', what: `${a.dir} cannot be created: ${a.parent} is not writable (${a.writeError})`, fix: `make ${a.parent} writable by root, ${elsewhere}` });
    return verdict(check, a.file, problems, `${a.dir} does not exist yet; made by the first attach`);
  }
  if (d.kind !== 'dir') {
    return verdict(check, a.file, [{ status: 'warn', what: `${a.dir} is a ${d.kind}, not a directory`, fix: `remove ${a.dir}, ${elsewhere}` }], '');
  }
  if (d.uid !== 0) problems.push({ status: 'warn', what: `${a.dir} is owned by uid ${d.uid}, not root`, fix: `chown root: ${a.dir}` });
  if (d.mode & 0o022) problems.push({ status: 'warn', what: `${a.dir} is writable by group or others (mode ${octal(d.mode)})`, fix: `chmod go-w ${a.dir}` });
  if (a.writeError) problems.push({ status: 'warn', what: `root cannot write in ${a.dir} (${a.writeError})`, fix: `make ${a.dir} writable by root, ${elsewhere}` });
  const f = a.fileFacts;
  if (f.exists) {
    if (f.kind !== 'file') {
      problems.push({ status: 'warn', what: `it is a ${f.kind}, not a regular file`, fix: `remove ${a.file}; the next attach creates it` });
    } else {
      if (f.uid !== 0) problems.push({ status: 'warn', what: `owned by uid ${f.uid}, not root`, fix: `chown root: ${a.file}` });
      if ((f.mode & 0o777) !== 0o600) problems.push({ status: 'warn', what: `mode ${octal(f.mode)} (must be 600)`, fix: `chmod 600 ${a.file}` });
    }
  }
  return verdict(check, a.file, problems, f.exists ? 'root-owned, mode 600, in a root-only directory' : 'not written yet (created by the first attach); its directory is fine');
}

/** Programs that builds use, and the Debian package of each. */
export const BUILD_TOOLS: Record<string, string> = {
  mke2fs: 'e2fsprogs', debugfs: 'e2fsprogs', e2fsck: 'e2fsprogs', patchelf: 'patchelf', 'apt-get': 'apt', 'apt-cache': 'apt', dpkg: 'dpkg',
};

export function buildToolsCheck(missing: string[]): CheckResult {
  const all = Object.keys(BUILD_TOOLS);
  if (!missing.length) return ok('build-tools', all.join(' '));
  const packages = [...new Set(missing.map((t) => BUILD_TOOLS[t] ?? t))];
  return warning('build-tools', `missing ${missing.join(', ')}: needed only to build toolkit images, not to attach with one`,
    `apt-get install ${packages.join(' ')}`);
}
