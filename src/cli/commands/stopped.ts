// crashcart --stopped <target> [command], --rootfs DIR, --from-image REF: the files of a
// container that does not run (crashed, in a restart loop, OOM-killed), of any directory or
// of a local image, opened in a sandbox with the toolkit (src/core/sandbox.ts). Loaded only
// when one of those is given: a plain attach never pays for it.
import { realpathSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { checkUserSpec, envAssignments } from '../../core/command.js';
import { CrashcartError, errnoCode } from '../../core/errors.js';
import { configuredFault } from '../../core/fault.js';
import { firstLine, runSandbox } from '../../core/sandbox.js';
import { describeEnd, displayName, EMPTY_CONFIG, type StoppedContainer } from '../../core/stopped.js';
import { StateStore } from '../../core/state.js';
import { recordedDigest } from '../../image/cache.js';
import { attachAdds } from '../../image/profile.js';
import { describe as describeContainer, pickRuntimes, resolveAmong, RUNTIMES, type Container, type Runtime, type Target } from '../../runtimes/index.js';
import { logger, requireRoot, warn } from '../output.js';
import { toolkitImage, type AttachArgs } from './attach.js';

/** The attach options, whose table has the sandbox's too (--stopped, --rootfs, ...). */
export type StoppedArgs = AttachArgs;

/** Statuses whose processes still exist: --stopped leaves them to an attach. */
const LIVE = new Set(['running', 'paused', 'pausing', 'frozen', 'stopping', 'restarting']);

/** What --stopped makes of a match: any container whose processes are gone. */
export function acceptStopped(c: Container, query: string): Target {
  if (c.status === 'running' && c.pid > 0) {
    throw new CrashcartError(`container ${query} is running: --stopped opens containers that do not run (${describeContainer(c)})`, {
      hint: `attach to it as it runs: crashcart ${query}`,
    });
  }
  if (LIVE.has(c.status)) {
    throw new CrashcartError(`container ${query} is ${c.status}: its processes still exist, --stopped opens containers that do not run (${describeContainer(c)})`, {
      hint: c.status === 'paused' || c.status === 'frozen' ? 'resume it and attach to it, or stop it first' : 'wait until it has stopped, or attach to it',
    });
  }
  return { pid: 0, runtime: c.runtime, id: c.id, ...(c.name ? { name: c.name } : {}), ...(c.namespace ? { namespace: c.namespace } : {}), container: c };
}

/** Options that are wrong with a sandbox, whatever it opens; checked before anything is looked up. */
export function checkSandboxArgs(args: StoppedArgs, command: string[]): void {
  const modes = [args.stopped && '--stopped', args.rootfs !== undefined && '--rootfs', args['from-image'] !== undefined && '--from-image'].filter(Boolean) as string[];
  const forSandbox = [args.entrypoint && '--entrypoint', args.net !== undefined && '--net', args['rw-volumes'] && '--rw-volumes'].find(Boolean);
  if (modes.length === 0) {
    throw new CrashcartError(`${forSandbox} applies to --stopped, --rootfs and --from-image only`, { hint: `add one of them, or drop ${forSandbox}` });
  }
  if (modes.length > 1) throw new CrashcartError(`${modes.join(' and ')} exclude each other`, { hint: 'give one of them' });
  const mode = modes[0]!;
  for (const o of ['rootfs', 'from-image', 'image', 'user', 'workdir'] as const) {
    if (args[o] === '') throw new CrashcartError(`--${o} needs a value`, { hint: 'see crashcart --help' });
  }
  const clash = [
    args['mount-only'] && '--mount-only',
    args.unmount && '--unmount',
    args.keep && '--keep',
    args.exec && '--exec',
    args.caps === 'target' && '--caps target',
    !args.cgroup && '--no-cgroup',
    args.method !== 'auto' && `--method ${args.method}`,
    args['allow-host'] && '--allow-host',
  ].find(Boolean);
  if (clash) throw new CrashcartError(`${clash} applies to an attach, not to ${mode}: the sandbox runs none of the container's processes`, { hint: `drop ${clash}` });
  const several = [args.all && '--all', args.target?.includes(',') && 'several targets', args.filter.length > 0 && '--filter', args.parallel !== undefined && '--parallel',
    !args.prefix && '--no-prefix', args.json && '--json'].find(Boolean);
  if (several) throw new CrashcartError(`${several} and ${mode} exclude each other: ${mode} opens one at a time`, { hint: `run crashcart ${mode} once for each` });
  if (mode !== '--stopped') {
    const other = [args.target !== undefined && `the target ${args.target}`, args.pod !== undefined && '--pod', args.runtime !== undefined && mode === '--rootfs' && '--runtime',
      args.namespace !== undefined && '--namespace'].find(Boolean);
    if (other) throw new CrashcartError(`${mode} and ${other} exclude each other`, { hint: `${mode} names what to open; with it, the words after the options are the command` });
  }
  if (args.pod === undefined) {
    for (const o of ['container', 'k8s-namespace'] as const) {
      if (args[o] !== undefined) throw new CrashcartError(`--${o} applies to --pod only`, { hint: 'add --pod NAME, or drop it' });
    }
  } else if (args.net === 'host') {
    throw new CrashcartError('--net host and --pod exclude each other: the sandbox joins the network of the pod', { hint: 'drop --net host' });
  }
  if (args.stopped && args.target === undefined && args.pod === undefined) {
    throw new CrashcartError('--stopped needs a target', { hint: 'name a container ID or name, or a pod with --pod' });
  }
  if (args.entrypoint && command.length === 0 && args.rootfs !== undefined) {
    throw new CrashcartError('--entrypoint: a directory has no entrypoint', { hint: 'give the command to run' });
  }
  if (args.workdir !== undefined && !args.workdir.startsWith('/')) {
    throw new CrashcartError(`--workdir ${args.workdir}: not an absolute path`, { hint: 'give the absolute path of a directory in the container' });
  }
  if (args.user !== undefined) checkUserSpec(args.user);
  envAssignments(args.env);
  if (args.add.length) {
    if (args.image !== undefined) throw new CrashcartError('--add and --image exclude each other', { hint: '--add builds on the default toolkit; to add to your image, build it with crashcart image build --add ... -o FILE' });
    attachAdds(args.add, []); // the names are checked before anything is looked up
  }
}

/** The runtimes --stopped asks: those present that can say where a stopped container's files are. */
function stoppedRuntimes(name: string | undefined): Runtime[] {
  if (name === 'pid') throw new CrashcartError('--stopped opens containers, and a PID is a running process', { hint: 'name the container, or attach to the process' });
  const picked = pickRuntimes(name);
  const able = picked.filter((r) => r.describeStopped);
  if (name !== undefined && able.length === 0) {
    throw new CrashcartError(`--stopped: crashcart finds no stopped ${name} containers (${name} keeps none it can read)`, { hint: 'open its directory with --rootfs DIR' });
  }
  return able.filter((r) => r.present());
}

async function describeStoppedTarget(args: StoppedArgs): Promise<StoppedContainer> {
  if (args.pod !== undefined) {
    if (args.target !== undefined) {
      throw new CrashcartError(`--pod ${args.pod} and the target ${args.target} exclude each other`, { hint: 'give one; with --pod, the words after the options are the command' });
    }
    if (args.runtime !== undefined && args.runtime !== 'containerd') {
      throw new CrashcartError(`--pod --stopped reads containerd's records, not ${args.runtime}'s`, { hint: 'drop --runtime' });
    }
    const { describePodStopped } = await import('../../runtimes/kubernetes-stopped.js');
    return describePodStopped(
      { pod: args.pod, namespace: args['k8s-namespace'] ?? 'default', ...(args.container !== undefined ? { container: args.container } : {}) },
      { ...(args.namespace !== undefined ? { containerdNamespace: args.namespace } : {}), warn },
    );
  }
  return findStopped(args.target!, { runtime: args.runtime, namespace: args.namespace });
}

/**
 * Where the files of the stopped container `query` are (the post-mortem resolution: each
 * runtime's describeStopped), among the runtimes that can say. crashcart cp uses it too,
 * with an `accept` of its own.
 */
export async function findStopped(query: string, o: { runtime?: string; namespace?: string; accept?: (c: Container, query: string) => Target }): Promise<StoppedContainer> {
  const ns = o.namespace;
  const runtimes = stoppedRuntimes(o.runtime).filter((r) => ns === undefined || r.namespaced);
  let target: Target;
  try {
    target = await resolveAmong(query, runtimes, { scope: ns === undefined ? {} : { namespace: ns }, pids: false, warn, accept: o.accept ?? acceptStopped });
  } catch (e) {
    if ((e as CrashcartError).code !== 'ENOMATCH') throw e;
    throw new CrashcartError(`no container matches '${query}'${ns === undefined ? '' : ` in namespace ${ns}`} (asked: ${runtimes.map((r) => r.name).join(', ') || 'none present'})`, {
      code: 'ENOMATCH',
      hint: "a removed container's files are gone; see the containers there are with crashcart ps -a",
    });
  }
  const runtime = RUNTIMES.find((r) => r.name === target.runtime)!;
  return runtime.describeStopped!(target.container!);
}

/** --rootfs DIR: any directory, opened the same way (an unpacked image, a chroot, a stopped nspawn machine). */
function describeRootfs(dir: string): StoppedContainer {
  let path: string;
  try {
    path = realpathSync(dir);
    if (!statSync(path).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (e) {
    throw new CrashcartError(`--rootfs ${dir}: ${errnoCode(e) ?? (e as Error).message}`, { hint: 'give the directory of a root filesystem', cause: e });
  }
  const name = basename(path).replace(/[^A-Za-z0-9.-]/g, '-').slice(0, 63) || 'rootfs';
  return { kind: 'rootfs', runtime: 'rootfs', id: path, layers: [path], mounts: [], config: { ...EMPTY_CONFIG, hostname: name }, state: { status: 'directory' } };
}

/** --from-image REF: docker's or podman's image of that name, from its local layers (nothing is pulled). */
async function describeImage(ref: string, runtime: string | undefined): Promise<StoppedContainer> {
  const { docker } = await import('../../runtimes/docker.js');
  const { podman } = await import('../../runtimes/podman.js');
  if (runtime !== undefined && runtime !== 'docker' && runtime !== 'podman') {
    throw new CrashcartError(`--from-image opens docker and podman images, not ${runtime}'s`, { hint: 'use --runtime docker or --runtime podman, or --rootfs DIR for an unpacked image' });
  }
  const sources = [
    { name: 'docker', present: docker.present(), find: async () => (await import('../../runtimes/docker-stopped.js')).describeDockerImage(ref) },
    { name: 'podman', present: podman.present(), find: async () => (await import('../../runtimes/podman-stopped.js')).describePodmanImage(ref) },
  ].filter((s) => (runtime ?? s.name) === s.name && s.present);
  const found = (await Promise.all(sources.map(async (s) => ({ s, image: await s.find() })))).filter((f) => f.image);
  if (found.length > 1) {
    throw new CrashcartError(`image ${ref} is in both ${found.map((f) => f.s.name).join(' and ')}`, { hint: 'name one with --runtime docker or --runtime podman' });
  }
  if (found.length === 0) {
    throw new CrashcartError(`no image ${ref} here (asked: ${sources.map((s) => s.name).join(', ') || 'no docker or podman present'})`, {
      hint: 'crashcart opens local images only: pull it first (docker pull, podman pull)',
    });
  }
  return found[0]!.image!;
}

/** "network: ..." of the first line. */
function networkWords(c: StoppedContainer, net: 'none' | 'host'): string {
  if (c.join) return `the pod's (joined from ${c.join.what})`;
  return net === 'host' ? "the host's" : 'loopback only';
}

export async function stopped(args: StoppedArgs, command: string[]): Promise<number> {
  requireRoot('crashcart');
  configuredFault();
  const log = logger(args.verbose);
  checkSandboxArgs(args, command);
  new StateStore().checkTrust();
  const c = args.rootfs !== undefined ? describeRootfs(args.rootfs)
    : args['from-image'] !== undefined ? await describeImage(args['from-image'], args.runtime)
      : await describeStoppedTarget(args);
  log(`${c.kind}: ${c.runtime} ${c.id}: layers ${c.layers.join(' ')}`);
  const image = await toolkitImage(args);
  log(`image: ${image.path}${image.built ? ' (built now)' : ''}`);
  const net = args.net ?? 'none';
  const found = c.kind === 'image' ? `${c.name} (${c.runtime}, ${c.id.slice(0, 12)})` : `${displayName(c)} ${describeEnd(c.state)}`;
  process.stderr.write(`crashcart: ${firstLine(c, found, networkWords(c, net))}\n`);
  if (net === 'host') warn("--net host: the sandbox shares the host's network; what runs there can reach and bind the host's interfaces");
  const volumes = c.mounts.filter((m) => m.kind === 'volume' || m.kind === 'bind');
  if (args['rw-volumes'] && volumes.length > 0) {
    warn(`--rw-volumes: writes to ${volumes.map((m) => m.destination).join(', ')} reach the container's own files`);
  }
  return runSandbox(c, {
    command,
    entrypoint: args.entrypoint,
    interactive: Boolean(process.stdin.isTTY),
    user: args.user,
    workdir: args.workdir,
    env: args.env,
    targetEnv: args['target-env'],
    net,
    rwVolumes: args['rw-volumes'],
    image: image.path,
    imageSha256: await recordedDigest(image.path),
    audit: args.audit,
    log,
    warn,
  });
}
