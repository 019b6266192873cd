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
}

export interface Runtime {
  readonly name: string;
  /** Cheap check that this runtime is in use on this host (a state directory, a socket). */
  present(): boolean;
  /** Every container the runtime knows about, running or not. */
  list(): Promise<Container[]>;
  /**
   * Optional cheaper lookup: the containers that may match `query` (its exact ID or name,
   * or an ID it prefixes); a superset is fine. Without it, list() is used.
   */
  find?(query: string): Promise<Container[]>;
}
