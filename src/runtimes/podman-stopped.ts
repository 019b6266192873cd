// Where podman keeps an exited container: `podman container inspect` (the same shape as
// docker's) names its containers-storage overlay directories, its volumes and binds, its
// config and how it ended. The CLI is asked here, not the database: --stopped is not the
// attach path, and its answer is the one podman itself would act on.
import { CrashcartError } from '../core/errors.js';
import type { StoppedContainer } from '../core/stopped.js';
import { runCommand, withDeadline } from './deadline.js';
import { fromInspect, imageFromInspect, type Inspected } from './docker-stopped.js';
import type { Container } from './types.js';

/** podman's CLI is slower than a lookup (~0.1 s, more on a loaded host). */
export const PODMAN_INSPECT_MS = 10_000;

const HINT = 'check that podman works (podman ps -a)';

/** `podman <kind> inspect <name>`'s one entry; undefined when podman has no such one. */
async function inspect(kind: 'container' | 'image', name: string, signal?: AbortSignal): Promise<Inspected | undefined> {
  const args = [kind, 'inspect', '--format', 'json', name];
  const what = `'podman ${args.join(' ')}'`;
  let r;
  try {
    r = await withDeadline(PODMAN_INSPECT_MS, signal, (sig) => runCommand('podman', args, { signal: sig, what, hint: HINT }));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CrashcartError('podman not found: cannot inspect its containers and images', { hint: 'install podman' });
    throw e;
  }
  if (r.code !== 0) {
    if (/no such (container|image|object)|image not known|failed to find/i.test(r.stderr)) return undefined;
    throw new CrashcartError(`${what} failed: ${r.stderr.trim().split('\n').pop() || `exit ${r.code}`}`, { hint: HINT });
  }
  let entries: unknown;
  try {
    entries = JSON.parse(r.stdout);
  } catch {
    entries = undefined;
  }
  if (!Array.isArray(entries) || entries.length !== 1) throw new CrashcartError(`${what} printed something unexpected`, { hint: HINT });
  return entries[0] as Inspected;
}

export async function describePodman(c: Container, signal?: AbortSignal): Promise<StoppedContainer> {
  const i = await inspect('container', c.id, signal);
  if (!i) throw new CrashcartError(`podman container ${c.name ?? c.id} is gone (removed meanwhile)`, { hint: 'see podman ps -a' });
  return fromInspect('podman', i);
}

/** podman's image `ref` from its local layers; undefined when podman has none of that name. */
export async function describePodmanImage(ref: string, signal?: AbortSignal): Promise<StoppedContainer | undefined> {
  const i = await inspect('image', ref, signal);
  return i && imageFromInspect('podman', ref, i);
}
