// The shared graft record: which targets have the toolkit grafted, from which loop device,
// for which sessions. A session joins an existing graft or makes it; the last one to leave
// takes it away; a session that died is noticed by whoever looks next (any attach, or
// `crashcart gc`), and what it left is cleaned up then.
import { statSync } from 'node:fs';
import { imageLabel } from '../image/store.js';
import { CrashcartError } from './errors.js';
import { faultPoint } from './fault.js';
import { findGraft, findToolkit, graftToolkit, isToolkitMount, sweepLeftovers, ungraftToolkit, type MethodChoice } from './graft.js';
import { acquireLoop, loopBackingFile, loopBacks, loopIndexOf, releaseLoop, type HeldLoop } from './loop.js';
import { isAlive, selfStart } from './proc.js';
import { sessionAlive, StateStore, targetKey, type Session, type TargetRecord } from './state.js';
import { inspectTarget, TargetHandles, type Target, type TargetFacts } from './target.js';

export type Log = (line: string) => void;

export interface GraftOptions {
  image: string;
  /** the image's loop device, held by the caller for several grafts (else found or attached here) */
  loop?: HeldLoop;
  method: MethodChoice;
  allowHost: boolean;
  /** -v lines */
  log: Log;
  /** lines shown even without -v */
  warn: Log;
}

export const describeTarget = (t: Pick<Target, 'runtime' | 'id' | 'pid'>) => (t.runtime === 'pid' ? `process ${t.pid}` : `${t.runtime} container ${t.id}`);

/** crashcart's own process, as a session record holds it. */
export const self = (): { pid: number; start: number } => ({ pid: process.pid, start: selfStart()! });

let sessions = 0;
/** A session's own id, unique on the host: one crashcart process may run several at once. */
export const newSessionId = () => `${process.pid}-${self().start}-${++sessions}`;

function newRecord(key: string, target: Target, facts: TargetFacts): TargetRecord {
  return {
    key,
    target: { pid: facts.pid, start: facts.start, runtime: target.runtime, id: target.id },
    image: '',
    loop: '',
    method: '',
    createdDir: false,
    pinned: false,
    sessions: [],
  };
}

/**
 * Makes sure the image is grafted in the target and records `session` (if any) against it.
 * Runs holding the target's record (or the whole state). Returns the record.
 */
export async function ensureGrafted(store: StateStore, target: Target, facts: TargetFacts, opts: GraftOptions, session?: Session, pin = false): Promise<TargetRecord> {
  const key = targetKey(facts.mntNs);
  const image = statSync(opts.image);
  let rec = store.read(key);
  if (rec && !isAlive(rec.target.pid, rec.target.start)) rec = undefined; // a namespace inode reused
  rec = rec ?? newRecord(key, target, facts);
  rec.sessions = rec.sessions.filter(sessionAlive);

  const existing = findGraft(facts.pid);
  if (existing) {
    const index = loopIndexOf(existing.major, existing.minor);
    if (index === undefined) {
      throw new CrashcartError(`${describeTarget(target)} has ${existing.fsType} ${existing.source} mounted at /dev/crashcart, not a crashcart toolkit: crashcart leaves it alone`, {
        hint: 'unmount it inside the container if it is yours to remove',
      });
    }
    if (!loopBacks(index, { dev: image.dev, ino: image.ino })) throw anotherImage(target, rec, index);
    opts.log(`reusing the toolkit already grafted from /dev/loop${index}`);
    if (!rec.loop) Object.assign(rec, { loop: `/dev/loop${index}`, method: 'unknown', createdDir: true, image: opts.image });
  } else {
    // Recorded before the mount exists: if crashcart is killed in between, the next run
    // finds a dead session here and takes away whatever it left.
    store.write({ ...rec, sessions: [...rec.sessions, session ?? { processes: [self()] }] });
    let loop: HeldLoop | undefined;
    let handles: TargetHandles | undefined;
    try {
      loop = opts.loop ?? acquireLoop(opts.image);
      opts.log(`${loop.attached ? 'attached' : 'sharing'} ${loop.path} for ${opts.image}`);
      faultPoint('after-loop-attach');
      handles = TargetHandles.forGraft(facts);
      const outcome = await graftToolkit(handles, loop, opts.method);
      if (outcome.fallbackReason) opts.log(`mknod path failed (${outcome.fallbackReason}); used the mount API`);
      if (outcome.remountedParent) opts.log("the container's /dev was read-only: made writable for a moment, then restored");
      opts.log(`grafted at /dev/crashcart with ${outcome.method}`);
      Object.assign(rec, { loop: loop.path, method: outcome.method, createdDir: outcome.createdDir, image: opts.image, pinned: false });
    } catch (e) {
      if (rec.sessions.length > 0 || rec.pinned) store.write(rec);
      else store.remove(key);
      throw e;
    } finally {
      handles?.close();
      // the mount holds the device now (or, on failure, autoclear frees it)
      if (loop && loop !== opts.loop) releaseLoop(loop);
    }
  }
  if (session) rec.sessions.push(session);
  if (pin) rec.pinned = true;
  store.write(rec);
  faultPoint('after-state-write');
  return rec;
}

/**
 * The graft in the target is of another image: which one (its cache name and what it adds,
 * from its sidecar), on which loop device, and who holds it.
 */
function anotherImage(target: Target, rec: TargetRecord, index: number): CrashcartError {
  const backing = loopBackingFile(index);
  const label = backing === undefined ? undefined : imageLabel(backing.replace(/ \(deleted\)$/, ''));
  const live = rec.sessions.length; // the live ones: ensureGrafted has filtered them
  const held = live > 0 ? `, held by ${live} other session${live === 1 ? '' : 's'}` : rec.pinned ? ', kept by crashcart -m' : '';
  const use = label === undefined ? 'use that image with -i' : `use it with ${label.added.length ? `--add ${label.added.join(',')} or ` : ''}-i ${label.name}`;
  return new CrashcartError(`${describeTarget(target)} already has another toolkit image grafted at /dev/crashcart${held}: ${label?.text ?? 'an image sysfs does not name'} on /dev/loop${index}`, {
    hint: `${use}, or take it out with crashcart -u once its sessions end`,
  });
}

/** What releaseIfUnused did: kept it (in use), unmounted or detached the graft, swept
 *  what an interrupted graft left, cleared a record with nothing left of it in the target,
 *  or forgot a target that is gone. */
export type Release = 'kept' | 'unmounted' | 'detached' | 'swept' | 'cleared' | 'forgotten';

/** Takes the toolkit out of a target if nothing needs it any more. Runs holding its record (or the whole state). */
export async function releaseIfUnused(store: StateStore, rec: TargetRecord, log: Log, known?: TargetFacts): Promise<Release> {
  rec.sessions = rec.sessions.filter(sessionAlive);
  if (rec.pinned || rec.sessions.length > 0) {
    store.write(rec);
    if (rec.sessions.length > 0) log(`${rec.sessions.length} other session(s) still use the toolkit: leaving it`);
    return 'kept';
  }
  if (!isAlive(rec.target.pid, rec.target.start)) {
    store.remove(rec.key); // the container is gone, and its mounts with it
    return 'forgotten';
  }
  // the session's own facts of the target, when the record is of that same process
  const facts = known && known.pid === rec.target.pid && known.start === rec.target.start ? known : inspectTarget(rec.target.pid, { allowHost: true });
  // A record without a method is a graft that never finished: whatever of it exists
  // (the mount, the directory, the device node) is crashcart's.
  const unfinished = rec.method === '';
  const handles = TargetHandles.forGraft(facts);
  let done: Release = 'cleared';
  try {
    // only crashcart's: a mount the container made there itself is its own business
    if (findToolkit(facts.pid)) {
      const { lazy } = await ungraftToolkit(handles, { removeDir: rec.createdDir || unfinished });
      log(lazy ? 'toolkit detached (still in use by a leftover process; freed when it exits)' : 'toolkit unmounted');
      done = lazy ? 'detached' : 'unmounted';
    } else if ((unfinished || rec.createdDir) && !findGraft(facts.pid)) {
      // unmounted already (an ungraft that was interrupted, or by hand): the rest goes
      if (await sweepLeftovers(handles)) done = 'swept';
    }
  } finally {
    handles.close();
  }
  store.remove(rec.key);
  return done;
}

/** Forgets dead sessions everywhere, and ungrafts targets that crashed sessions left. Runs holding the whole state. */
export async function pruneStale(store: StateStore, log: Log): Promise<void> {
  // one listing of the directory for both (this runs on every attach)
  const names = store.list();
  store.sweepPartialWrites(log, names);
  for (const rec of store.all(names)) {
    if (!needsCleanup(rec)) continue;
    try {
      await releaseIfUnused(store, rec, log);
    } catch (e) {
      log(`could not clean up after a stale session in ${rec.target.runtime} ${rec.target.id}: ${(e as Error).message}`);
    }
  }
}

/** A record with a dead session, or with none left and nothing keeping the graft. */
function needsCleanup(rec: TargetRecord): boolean {
  const live = rec.sessions.filter(sessionAlive).length;
  return live !== rec.sessions.length || (live === 0 && !rec.pinned) || !isAlive(rec.target.pid, rec.target.start);
}

export interface GcAction {
  target: TargetRecord['target'];
  /** what was (or, with dry-run, would be) done */
  action: Release | 'failed';
  message?: string;
}

/** crashcart gc: every record whose sessions are all dead, or whose target is gone. */
export function collectGarbage(store: StateStore, opts: { dryRun: boolean; log: Log }): Promise<GcAction[]> {
  return store.withLock(async () => {
    const out: GcAction[] = [];
    if (!opts.dryRun) store.sweepPartialWrites(opts.log);
    for (const rec of store.all()) {
      if (!needsCleanup(rec)) continue;
      const gone = !isAlive(rec.target.pid, rec.target.start);
      if (opts.dryRun) {
        const live = rec.sessions.filter(sessionAlive).length;
        out.push({ target: rec.target, action: gone ? 'forgotten' : live > 0 || rec.pinned ? 'kept' : findToolkit(rec.target.pid) ? 'unmounted' : 'cleared' });
        continue;
      }
      try {
        out.push({ target: rec.target, action: await releaseIfUnused(store, rec, opts.log) });
      } catch (e) {
        out.push({ target: rec.target, action: 'failed', message: (e as Error).message });
      }
    }
    return out.filter((a) => a.action !== 'kept');
  });
}

/** --mount-only: graft and pin; the toolkit stays until crashcart -u. */
export function mountOnly(target: Target, facts: TargetFacts, opts: GraftOptions): Promise<TargetRecord> {
  const store = new StateStore();
  return store.withLock(async () => {
    await pruneStale(store, opts.log);
    return ensureGrafted(store, target, facts, opts, undefined, true);
  });
}

/** --unmount: unpin, and ungraft now unless live sessions still use it. */
export function unmount(target: Target, facts: TargetFacts, opts: { log: Log }): Promise<{ removed: boolean; sessions: number }> {
  const store = new StateStore();
  return store.withLock(async () => {
    await pruneStale(store, opts.log);
    const key = targetKey(facts.mntNs);
    // Without a record (grafted by an older crashcart, or the state was lost) the directory
    // is taken to be crashcart's own.
    const rec = store.read(key) ?? { ...newRecord(key, target, facts), createdDir: true };
    rec.pinned = false;
    const live = rec.sessions.filter(sessionAlive).length;
    const mounted = findGraft(facts.pid);
    if (mounted && !isToolkitMount(mounted)) {
      throw new CrashcartError(`${describeTarget(target)} has ${mounted.fsType} ${mounted.source} mounted at /dev/crashcart, not a crashcart toolkit: crashcart leaves it alone`, {
        hint: 'unmount it inside the container if it is yours to remove',
      });
    }
    if (!mounted) {
      store.remove(key);
      return { removed: false, sessions: 0 };
    }
    await releaseIfUnused(store, rec, opts.log);
    return { removed: live === 0, sessions: live };
  });
}
