// One module per container runtime, each behind this interface. A runtime lists the
// containers it knows; resolution (names, ID prefixes, ambiguity) is shared in index.ts.
export interface Container {
  runtime: string;
  id: string;
  name?: string;
  /** host pid of the container's first process; 0 when it has none */
  pid: number;
  /** 'running', or the runtime's word for why not ('stopped', 'created', 'exited', ...) */
  status: string;
  /** containerd's namespace (k8s.io, moby, default, ...), for runtimes that have them */
  namespace?: string;
  /** the runtime's labels; Kubernetes finds pods through io.kubernetes.* labels */
  labels?: Record<string, string>;
}

/** What --exec asks a runtime's own exec to run. */
export interface ExecRequest {
  /** absolute path and arguments, e.g. ['/dev/crashcart/bin/bash', '-i'] */
  argv: string[];
  /** allocate a terminal (-t); stdin is always kept open (-i) */
  tty: boolean;
  /** extra environment for the command */
  env: Record<string, string>;
  user?: string;
  workdir?: string;
}

/** A command line to run (stdio inherited) and the environment it needs. */
export interface ExecCommand {
  file: string;
  args: string[];
  env?: Record<string, string>;
}

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
