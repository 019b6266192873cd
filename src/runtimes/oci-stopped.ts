// Where runc and crun keep a stopped container until `runc delete`: the state directory
// names its root filesystem and its bundle, whose config.json (the OCI spec) has the
// process's arguments, environment, working directory, user, hostname and mounts. The
// spec's reader is shared with containerd, whose containers carry the same spec.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrashcartError, errnoCode } from '../core/errors.js';
import { EMPTY_CONFIG, ownDestination, strings, type StoppedConfig, type StoppedContainer, type StoppedMount } from '../core/stopped.js';
import type { Container } from './types.js';

/** The parts of an OCI runtime spec (config.json) the sandbox uses. */
export interface OciSpec {
  hostname?: unknown;
  process?: { args?: unknown; env?: unknown; cwd?: unknown; user?: { uid?: unknown; gid?: unknown; additionalGids?: unknown } };
  root?: { path?: unknown };
  mounts?: unknown;
}

interface OciMount {
  destination?: unknown;
  type?: unknown;
  source?: unknown;
  options?: unknown;
}

/**
 * A spec's mounts as the sandbox takes them: binds with their host sources, and tmpfs; what
 * the runtime makes itself (proc, sysfs, devpts, mqueue, cgroup, anything under /dev, /proc
 * and /sys) the sandbox makes its own.
 */
export function ociMounts(mounts: unknown): StoppedMount[] {
  if (!Array.isArray(mounts)) return [];
  const out: StoppedMount[] = [];
  for (const m of mounts as OciMount[]) {
    if (typeof m?.destination !== 'string' || ownDestination(m.destination)) continue;
    const options = strings(m.options);
    const bind = m.type === 'bind' || options.includes('bind') || options.includes('rbind');
    if (bind && typeof m.source === 'string' && m.source.startsWith('/')) {
      out.push({ destination: m.destination, source: m.source, kind: 'bind', readOnly: options.includes('ro') });
    } else if (m.type === 'tmpfs') {
      out.push({ destination: m.destination, kind: 'tmpfs', readOnly: options.includes('ro') });
    }
  }
  return out;
}

/** The process and mounts of an OCI spec. */
export function fromOciSpec(spec: OciSpec): { config: StoppedConfig; mounts: StoppedMount[] } {
  const p = spec.process ?? {};
  const uid = typeof p.user?.uid === 'number' ? p.user.uid : 0;
  const gid = typeof p.user?.gid === 'number' ? p.user.gid : 0;
  const groups = Array.isArray(p.user?.additionalGids) ? p.user.additionalGids.filter((g): g is number => Number.isInteger(g)) : [];
  return {
    config: {
      env: strings(p.env),
      cwd: typeof p.cwd === 'string' ? p.cwd : '',
      user: uid === 0 && gid === 0 ? '' : `${uid}:${gid}`,
      ...(groups.length ? { groups } : {}),
      hostname: typeof spec.hostname === 'string' ? spec.hostname : '',
      entrypoint: strings(p.args),
      cmd: [],
    },
    mounts: ociMounts(spec.mounts),
  };
}

/** runc's state.json: the root filesystem, the bundle (a label), the creation time. */
export function parseRuncState(s: unknown): { rootfs?: string; bundle?: string } {
  const st = s as { config?: { rootfs?: unknown; labels?: unknown } } | undefined;
  const bundle = strings(st?.config?.labels).find((l) => l.startsWith('bundle='))?.slice('bundle='.length);
  return { rootfs: typeof st?.config?.rootfs === 'string' ? st.config.rootfs : undefined, bundle };
}

/** crun's status file: rootfs and bundle. */
export function parseCrunStatus(s: unknown): { rootfs?: string; bundle?: string } {
  const st = s as { rootfs?: unknown; bundle?: unknown } | undefined;
  return { rootfs: typeof st?.rootfs === 'string' ? st.rootfs : undefined, bundle: typeof st?.bundle === 'string' ? st.bundle : undefined };
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/**
 * A stopped runc or crun container from its state directory: its root filesystem is the
 * one layer, its spec the bundle's config.json (crun keeps a copy in its state directory).
 * Neither records how the process ended.
 */
export function describeOci(runtime: 'runc' | 'crun', root: string, c: Container): StoppedContainer {
  const dir = join(root, c.id);
  const file = join(dir, runtime === 'runc' ? 'state.json' : 'status');
  let where: { rootfs?: string; bundle?: string };
  try {
    where = runtime === 'runc' ? parseRuncState(readJson(file)) : parseCrunStatus(readJson(file));
  } catch (e) {
    throw new CrashcartError(`cannot read the state of ${runtime} container ${c.id}: ${file}: ${errnoCode(e) ?? (e as Error).message}`, {
      hint: `was it deleted meanwhile? see ${runtime} list`, cause: e,
    });
  }
  if (!where.rootfs) throw new CrashcartError(`${runtime} container ${c.id}: ${file} names no root filesystem`, { hint: `see ${runtime} state ${c.id}` });
  const specFiles = [...(runtime === 'crun' ? [join(dir, 'config.json')] : []), ...(where.bundle ? [join(where.bundle, 'config.json')] : [])];
  let spec: OciSpec | undefined;
  for (const f of specFiles) {
    try {
      spec = readJson(f) as OciSpec;
      break;
    } catch { /* the next one */ }
  }
  if (!spec) {
    throw new CrashcartError(`${runtime} container ${c.id}: its config.json is gone (${specFiles.join(', ') || 'no bundle recorded'})`, {
      hint: `open its root filesystem without its config: crashcart --rootfs ${where.rootfs}`,
    });
  }
  const { config, mounts } = fromOciSpec(spec);
  return {
    kind: 'container',
    runtime,
    id: c.id,
    ...(c.name ? { name: c.name } : {}),
    layers: [where.rootfs],
    mounts,
    config: { ...EMPTY_CONFIG, ...config },
    state: { status: c.status, unrecorded: `${runtime} records no exit code` },
  };
}
