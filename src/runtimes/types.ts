// One module per container runtime, each behind this interface. A runtime lists the
// containers it knows; resolution (names, ID prefixes, ambiguity) is shared in index.ts.
import type { StoppedContainer } from '../core/stopped.js';
import type { Container, ExecCommand, ExecRequest } from '../core/target.js';

export type { Container, ExecCommand, ExecRequest } from '../core/target.js';

/** What narrows a lookup: --namespace for runtimes with namespaces. */
export interface Scope {
  namespace?: string;
}

/** Could `c` be what the user means by `query`: its exact ID or name, or an ID it prefixes? */
export function mayMatch(c: Container, query: string): boolean {
  return c.id === query || c.name === query || c.id.startsWith(query);
}

export interface Runtime {
  readonly name: string;
  /** Its containers live in namespaces (containerd): --namespace narrows the lookup. */
  readonly namespaced?: boolean;
  /** Cheap check that this runtime is in use on this host (a state directory, a socket). */
  present(): boolean;
  /**
   * Every container the runtime knows about, running or not. When `signal` aborts, whatever
   * the lookup opened is destroyed and the promise rejects.
   */
  list(scope?: Scope, signal?: AbortSignal): Promise<Container[]>;
  /**
   * Optional cheaper lookup: the containers that may match `query` (its exact ID or name,
   * or an ID it prefixes); a superset is fine. Without it, list() is used.
   */
  find?(query: string, scope?: Scope, signal?: AbortSignal): Promise<Container[]>;
  /**
   * Where a container that does not run keeps its files, mounts and config, and how it
   * ended (--stopped); the module that knows is loaded only when this is asked.
   */
  describeStopped?(c: Container, signal?: AbortSignal): Promise<StoppedContainer>;
  /** The runtime's own exec (docker exec, runc exec, ...) running `req` inside `c`. */
  execCommand?(c: Container, req: ExecRequest): ExecCommand;
  /**
   * For runtimes that may wait on something (a daemon, a CLI): what that is, as errors and
   * warnings name it ('the docker daemon at /var/run/docker.sock').
   */
  daemon?(): string;
  /**
   * Whether one of its containers could have exactly `query` as its ID or name (the
   * runtime's naming rules); without it, any string could be. A runtime that cannot
   * answer is only waited for when it could.
   */
  couldName?(query: string): boolean;
  /**
   * How long a healthy answer may take after the disk has answered (default: a daemon's,
   * DAEMON_GRACE_MS in index.ts).
   */
  readonly graceMs?: number;
}
