// Faults injected on purpose, so that a failure or a SIGKILL at every step of an attach can
// be tested deterministically instead of by racing a timer:
//
//   CRASHCART_FAULT=<point>[:fail|kill|stop]
//
// fail (the default) makes the step fail as a real error would; kill sends SIGKILL to
// crashcart at that point (a forked child carries on, as after a real `kill -9`); stop
// stops crashcart (or, at a point inside a forked child, that child) until SIGCONT. Points
// inside the forked children are handled by the addon; the rest here.
import { CrashcartError } from './errors.js';
import type { FaultRequest } from '../native/index.js';

export const FAULT_POINTS = {
  'after-loop-attach': 'the loop device is attached, nothing is grafted yet',
  'after-mknod': 'the device node exists in the target (mknod method), nothing is mounted',
  'after-mount': "the toolkit is mounted, its node not yet removed, /dev not yet restored",
  'restore-dev': "making the target's read-only /dev read-only again fails",
  'after-state-write': 'the graft is recorded, no command runs yet',
  'before-spawn': 'the target is opened for the command, nothing forked',
  'in-target': "the command's process is in the target's namespaces, still host root, before chroot",
  'before-exec': 'the command is forked inside the target, not yet executed',
  'no-close-range': 'close_range is taken to be missing (the fallback marks fds one by one)',
  'after-spawn': 'the command runs',
  'during-ungraft': 'the toolkit is unmounted, its directory not yet removed',
  'sandbox-opened': 'a sandbox: the stopped container is described and the loop device held, nothing forked',
  'sandbox-unshared': "a sandbox: its namespaces are made and its sources opened, nothing mounted",
  'sandbox-overlay': "a sandbox: its root overlay is mounted, nothing inside it yet",
  'sandbox-mounted': 'a sandbox: its whole mount table is made, the toolkit too, before pivot_root',
  'sandbox-pivoted': 'a sandbox: its root is pivoted and the old one detached, no process forked',
  'sandbox-before-exec': "a sandbox: the command is forked inside it, as its user, not yet executed",
  'sandbox-running': 'a sandbox: the command runs',
  'cp-view-open': "crashcart cp of a stopped container: its files are open in a view held by crashcart's process, nothing copied yet",
} as const;

export type FaultPoint = keyof typeof FAULT_POINTS;
type Action = FaultRequest['action'];

const NATIVE: ReadonlySet<FaultPoint> = new Set(['after-mknod', 'after-mount', 'restore-dev', 'in-target', 'before-exec', 'no-close-range', 'during-ungraft',
  'sandbox-unshared', 'sandbox-overlay', 'sandbox-mounted', 'sandbox-pivoted', 'sandbox-before-exec']);

let parsed: { point: FaultPoint; action: Action } | null | undefined;

/** CRASHCART_FAULT, checked: a typo must not silently test nothing. */
export function configuredFault(env: NodeJS.ProcessEnv = process.env): { point: FaultPoint; action: Action } | null {
  const text = env.CRASHCART_FAULT;
  if (!text) return null;
  const [point, action = 'fail', ...rest] = text.split(':');
  if (!(point in FAULT_POINTS) || rest.length > 0) {
    throw new CrashcartError(`CRASHCART_FAULT: unknown fault point '${text}'`, { hint: `use one of ${Object.keys(FAULT_POINTS).join(', ')}, optionally with :fail, :kill or :stop` });
  }
  if (action !== 'fail' && action !== 'kill' && action !== 'stop') {
    throw new CrashcartError(`CRASHCART_FAULT: unknown action '${action}'`, { hint: 'use fail, kill or stop' });
  }
  return { point: point as FaultPoint, action };
}

function current() {
  if (parsed === undefined) parsed = configuredFault();
  return parsed;
}

/** At a point of crashcart's own: fail, die or stop here if CRASHCART_FAULT says so. */
export function faultPoint(point: FaultPoint): void {
  const f = current();
  if (f?.point !== point) return;
  if (f.action === 'kill') process.kill(process.pid, 'SIGKILL');
  if (f.action === 'stop') process.kill(process.pid, 'SIGSTOP');
  if (f.action === 'fail') throw new CrashcartError(`fault injected at ${point} (CRASHCART_FAULT)`, { code: 'EFAULTINJECTED' });
}

/** The error for a fault that a forked child injected. */
export function injectedFault(cause: unknown): CrashcartError {
  return new CrashcartError(`fault injected at ${current()?.point ?? '?'} (CRASHCART_FAULT)`, { code: 'EFAULTINJECTED', cause });
}

/** The part of the request that hands a fault to the addon, for points inside its children. */
export function nativeFault(): { fault?: FaultRequest } {
  const f = current();
  return f && NATIVE.has(f.point) ? { fault: { point: f.point, action: f.action } } : {};
}
