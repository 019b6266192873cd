// Where LXC keeps a stopped container: its config under the lxcpath names its root
// filesystem (lxc.rootfs.path: a directory, `dir:PATH`, or `overlay:LOWER:UPPER`), its init
// command, environment, working directory, ids, hostname and bind mounts (lxc.mount.entry).
// LXC keeps no record of how the container ended.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrashcartError, errnoCode } from '../core/errors.js';
import type { StoppedContainer, StoppedMount } from '../core/stopped.js';
import { ownDestination } from '../core/stopped.js';
import { unknownDriver } from './docker-stopped.js';
import { lxcPath, parseLxcConfig } from './lxc.js';
import type { Container } from './types.js';

/** lxc.rootfs.path as layers, the top first; undefined for a backend the sandbox cannot open. */
export function lxcLayers(rootfs: string): string[] | undefined {
  const [kind, ...rest] = rootfs.startsWith('/') ? ['dir', rootfs] : rootfs.split(':');
  if ((kind === 'dir' || kind === 'btrfs') && rest.length === 1 && rest[0]!.startsWith('/')) return [rest[0]!];
  // overlay:LOWER[:LOWER...]:UPPER (overlayfs is the older name)
  if ((kind === 'overlay' || kind === 'overlayfs') && rest.length >= 2 && rest.every((p) => p.startsWith('/'))) return rest.reverse();
  return undefined;
}

/** lxc.mount.entry: `SOURCE DEST TYPE OPTIONS [DUMP PASS]`, DEST relative to the root (or absolute). */
export function lxcMounts(entries: string[]): StoppedMount[] {
  const out: StoppedMount[] = [];
  for (const entry of entries) {
    const [source, dest, type, options = ''] = entry.split(/\s+/);
    if (!source || !dest || !type) continue;
    const destination = dest.startsWith('/') ? dest : `/${dest}`;
    if (ownDestination(destination)) continue;
    const opts = options.split(',');
    if (opts.includes('bind') || opts.includes('rbind')) {
      if (source.startsWith('/')) out.push({ destination, source, kind: 'bind', readOnly: opts.includes('ro') });
    } else if (type === 'tmpfs') {
      out.push({ destination, kind: 'tmpfs', readOnly: opts.includes('ro') });
    }
  }
  return out;
}

/** A stopped container from the text of its config. */
export function fromLxcConfig(name: string, text: string, status: string): StoppedContainer {
  const cfg = parseLxcConfig(text);
  const last = (k: string) => cfg.get(k)?.at(-1);
  const rootfs = last('lxc.rootfs.path') ?? last('lxc.rootfs');
  if (!rootfs) throw new CrashcartError(`LXC container ${name} has no lxc.rootfs.path in its config`, { hint: 'see its config under the lxcpath' });
  const layers = lxcLayers(rootfs);
  if (!layers) throw unknownDriver(`LXC container ${name}`, `the ${rootfs.split(':')[0]} backend (lxc.rootfs.path = ${rootfs})`, "LXC's dir and overlay backends",
      'mount its root filesystem read-only and open that with --rootfs DIR');
  const uid = last('lxc.init.uid');
  const gid = last('lxc.init.gid');
  return {
    kind: 'container',
    runtime: 'lxc',
    id: name,
    layers,
    mounts: lxcMounts(cfg.get('lxc.mount.entry') ?? []),
    config: {
      env: cfg.get('lxc.environment') ?? [],
      cwd: last('lxc.init.cwd') ?? '',
      user: uid || gid ? `${uid || '0'}:${gid || '0'}` : '',
      hostname: last('lxc.uts.name') ?? name,
      entrypoint: (last('lxc.init.cmd') ?? '/sbin/init').split(/\s+/).filter(Boolean),
      cmd: [],
    },
    state: { status, unrecorded: 'LXC records no exit code' },
  };
}

export function describeLxc(c: Container): StoppedContainer {
  const file = join(lxcPath(), c.id, 'config');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CrashcartError(`cannot read the config of LXC container ${c.id}: ${file}: ${errnoCode(e) ?? (e as Error).message}`, { hint: 'was it destroyed meanwhile? see lxc-ls -f', cause: e });
  }
  return fromLxcConfig(c.id, text, c.status);
}
