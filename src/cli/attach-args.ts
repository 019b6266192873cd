// The attach command's options, in one table that both parsers read: yargs (help, and
// every command line with something unusual in it) and parseAttachArgs, which reads a
// plain attach without loading yargs at all (about a third of an attach's time was
// yargs). parseAttachArgs takes only what it is sure yargs reads the same way, and
// otherwise gives up: yargs then parses it, and says what is wrong in its own words.

export interface AttachArgs {
  target?: string;
  image?: string;
  /** --add: the default toolkit plus these Debian packages (repeatable, or A,B) */
  add: string[];
  'mount-only': boolean;
  unmount: boolean;
  keep: boolean;
  verbose: boolean;
  user?: string;
  workdir?: string;
  env: string[];
  'target-env': boolean;
  cgroup: boolean;
  method: 'auto' | 'mknod' | 'mountapi';
  runtime?: string;
  namespace?: string;
  pod?: string;
  container?: string;
  'k8s-namespace'?: string;
  'allow-host': boolean;
  'insecure-image': boolean;
  exec: boolean;
  caps: 'root' | 'target';
  audit: boolean;
  /** several targets: every running container (of --runtime, in --namespace, matching --filter) */
  all: boolean;
  /** --filter name=GLOB | label=KEY[=VALUE], repeatable */
  filter: string[];
  /** several targets: at most this many at once (default: the number of CPUs) */
  parallel?: number;
  /** several targets: prefix each line with the target's name (--no-prefix: raw output) */
  prefix: boolean;
  /** several targets: one JSON object per line of output */
  json: boolean;
  // a sandbox instead of an attach (commands/stopped.ts)
  stopped: boolean;
  rootfs?: string;
  'from-image'?: string;
  entrypoint: boolean;
  net?: 'none' | 'host';
  'rw-volumes': boolean;
}

/** Several targets: a comma-separated list where one target goes, or --all. */
export const isFanOut = (args: Pick<AttachArgs, 'all' | 'target'>) => args.all || (args.target?.includes(',') ?? false);

export interface OptionSpec {
  type: 'string' | 'boolean' | 'number';
  alias?: string;
  default?: unknown;
  choices?: readonly string[];
  array?: boolean;
  describe: string;
}

export const ATTACH_OPTIONS = {
  image: { alias: 'i', type: 'string', describe: 'toolkit image file (default: $CRASHCART_IMAGE, else the cached default image)' },
  add: { type: 'string', array: true, default: [] as string[], describe: 'graft the default toolkit plus this Debian package, built once and cached (repeatable, or A,B)' },
  'mount-only': { alias: 'm', type: 'boolean', default: false, describe: 'graft the toolkit and leave it there; run nothing' },
  unmount: { alias: 'u', type: 'boolean', default: false, describe: 'take the toolkit out of the container' },
  keep: { alias: 'k', type: 'boolean', default: false, describe: 'leave the toolkit grafted after the command ends' },
  user: { type: 'string', describe: 'run as uid[:gid] or name[:group] (of the container)' },
  workdir: { alias: 'w', type: 'string', describe: "working directory inside the container (default: its process's own)" },
  env: { type: 'string', array: true, default: [] as string[], describe: 'set NAME=VALUE in the command environment (repeatable)' },
  'target-env': { type: 'boolean', default: true, describe: "start from the container process's environment (--no-target-env: from nothing)" },
  cgroup: { type: 'boolean', default: true, describe: "join the container's cgroups (--no-cgroup: stay in crashcart's)" },
  method: { type: 'string', choices: ['auto', 'mknod', 'mountapi'], default: 'auto', describe: 'how to mount the toolkit inside the container' },
  runtime: { alias: 'r', type: 'string', describe: 'look the target up in this runtime only (runc, crun, docker, podman, containerd, lxc, nspawn, pid)' },
  namespace: { type: 'string', describe: 'look in this containerd namespace only (k8s.io, moby, default, ...; with --pod: instead of k8s.io)' },
  pod: { type: 'string', describe: "a Kubernetes pod instead of a target: its container, found by the kubelet's labels" },
  container: { type: 'string', describe: "with --pod: the container's name in the pod (needed when it has several)" },
  'k8s-namespace': { type: 'string', describe: 'with --pod: the Kubernetes namespace of the pod (default: default)' },
  'allow-host': { type: 'boolean', default: false, describe: 'allow a target that shares the host mount namespace' },
  exec: { alias: 'e', type: 'boolean', default: false, describe: "run the command through the runtime's own exec (docker exec, runc exec, ...): the container's user, capabilities and seccomp profile" },
  caps: { type: 'string', choices: ['root', 'target'], default: 'root', describe: "the command's capabilities: full root (root), or the target process's own sets and no-new-privs (target)" },
  audit: { type: 'boolean', default: true, describe: 'record the session in the audit log (--no-audit: record only that a run went unrecorded)' },
  'insecure-image': { type: 'boolean', default: false, describe: 'use an image file that a non-root user could change' },
  all: { type: 'boolean', default: false, describe: 'run the command in every running container (narrowed by --runtime, --namespace, --filter)' },
  filter: { type: 'string', array: true, default: [] as string[], describe: 'with --all: name=GLOB (name or ID; any of several) or label=KEY[=VALUE] (each)' },
  parallel: { type: 'number', describe: 'with several targets: at most N at once (default: the number of CPUs)' },
  prefix: { type: 'boolean', default: true, describe: "with several targets: prefix each line with the target's name (--no-prefix: the raw output)" },
  json: { type: 'boolean', default: false, describe: 'with several targets: one JSON object per line: {target, stream, text}' },
  stopped: { type: 'boolean', default: false, describe: "open the files of a container that does not run in a sandbox (changes are thrown away; with --pod: the pod container's last exited attempt)" },
  rootfs: { type: 'string', describe: 'open this directory in a sandbox instead of a target' },
  'from-image': { type: 'string', describe: 'open this docker or podman image in a sandbox, from its local layers' },
  entrypoint: { type: 'boolean', default: false, describe: "with --stopped or --from-image: the container's own entrypoint and arguments after the command (alone: run them)" },
  net: { type: 'string', choices: ['none', 'host'], describe: "the sandbox's network: loopback only (none, the default) or the host's" },
  'rw-volumes': { type: 'boolean', default: false, describe: "with --stopped: the container's volumes and binds writable (as it had them), not read-only" },
} as const satisfies Record<string, OptionSpec>;

/** The global option every command has. */
export const VERBOSE: OptionSpec = { alias: 'v', type: 'boolean', default: false, describe: 'say what happens, on stderr' };

const SPECS: Record<string, OptionSpec> = { ...ATTACH_OPTIONS, verbose: VERBOSE };
const BY_ALIAS: Record<string, string> = Object.fromEntries(Object.entries(SPECS).flatMap(([name, s]) => (s.alias ? [[s.alias, name]] : [])));
/** The words that name a subcommand where an attach's target would go. */
export const SUBCOMMANDS: ReadonlySet<string> = new Set(['image', 'demo', 'ps', 'gc', 'doctor', 'forward', 'cp', 'completion', 'help']);

/** The options that take a value (`--image FILE`, `-i FILE`): splitArgv skips their values. */
export const VALUE_OPTIONS: ReadonlySet<string> = new Set(Object.entries(SPECS).filter(([, s]) => s.type !== 'boolean')
  .flatMap(([name, s]) => [`--${name}`, ...(s.alias ? [`-${s.alias}`] : [])]));

/**
 * crashcart's own words of a plain attach (`own` of splitArgv) as yargs would read them,
 * or undefined for anything this parser does not take: an unknown or repeated option, a
 * missing or dash-leading value, a choice that is not one, --help, --version, a
 * subcommand, clustered short options. yargs then reads the command line instead.
 */
export function parseAttachArgs(own: string[]): AttachArgs | undefined {
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(SPECS)) if (s.default !== undefined) out[name] = Array.isArray(s.default) ? [] : s.default;
  const seen = new Set<string>();
  for (let i = 0; i < own.length; i++) {
    const a = own[i]!;
    if (a === '-') return undefined; // yargs reads it as ''
    if (!a.startsWith('-')) {
      if (out.target !== undefined || SUBCOMMANDS.has(a) || a === '') return undefined;
      out.target = a;
      continue;
    }
    let name: string | undefined;
    let value: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      value = eq < 0 ? undefined : a.slice(eq + 1);
      if (!(name in SPECS) && name.startsWith('no-') && SPECS[name.slice(3)]?.type === 'boolean' && value === undefined) {
        name = name.slice(3);
        if (seen.has(name)) return undefined;
        seen.add(name);
        out[name] = false;
        continue;
      }
    } else {
      if (a.length !== 2) return undefined;
      name = BY_ALIAS[a[1]!];
    }
    const spec = name === undefined ? undefined : SPECS[name];
    if (!spec || name === undefined) return undefined;
    if (spec.type === 'boolean') {
      if (value !== undefined || seen.has(name)) return undefined;
      out[name] = true;
    } else {
      if (value === undefined) value = own[++i];
      if (value === undefined || value === '' || value.startsWith('-')) return undefined;
      if (spec.choices && !spec.choices.includes(value)) return undefined;
      if (spec.type === 'number') {
        if (!/^[0-9]+$/.test(value) || seen.has(name)) return undefined;
        out[name] = Number(value);
      } else if (spec.array) {
        (out[name] as string[]).push(value);
      } else {
        if (seen.has(name)) return undefined;
        out[name] = value;
      }
    }
    seen.add(name);
  }
  return out as unknown as AttachArgs;
}
