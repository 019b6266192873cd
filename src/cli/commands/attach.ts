// The default command: crashcart [options] <target> [-- command args...]
import type { Argv } from 'yargs';
import { checkUserSpec, envAssignments } from '../../core/command.js';
import { CrashcartError } from '../../core/errors.js';
import { writeAudit } from '../../core/audit.js';
import { configuredFault } from '../../core/fault.js';
import { describeTarget, mountOnly, unmount } from '../../core/grafts.js';
import { runSession } from '../../core/session.js';
import { StateStore } from '../../core/state.js';
import { inspectTarget } from '../../core/target.js';
import { stopwatch, type Stopwatch } from '../../core/timing.js';
import { recordedDigest, resolveImage } from '../../image/cache.js';
import { parseFilter } from '../../runtimes/filter.js';
import { resolveTarget, runtimeExecutor, type Target } from '../../runtimes/index.js';
import { logger, progress, requireRoot, warn } from '../output.js';
import { isatty } from '../../native/index.js';
import { ATTACH_OPTIONS, isFanOut, type AttachArgs, type OptionSpec } from '../attach-args.js';

export type { AttachArgs } from '../attach-args.js';

/** The attach options for yargs, from the table parseAttachArgs reads too. */
export function attachOptions<T>(y: Argv<T>): Argv<T> {
  let r: Argv<T> = y.positional('target', { type: 'string', describe: 'container ID, unique ID prefix, name, or PID (not with --pod); several: t1,t2,t3' });
  for (const [name, s] of Object.entries(ATTACH_OPTIONS) as [string, OptionSpec][]) {
    r = r.option(name, {
      type: s.type,
      describe: s.describe,
      ...(s.alias ? { alias: s.alias } : {}),
      ...(s.default !== undefined ? { default: s.default } : {}),
      ...(s.choices ? { choices: s.choices } : {}),
      ...(s.array ? { array: true, nargs: 1 } : s.type !== 'boolean' ? { requiresArg: true } : {}),
    }) as Argv<T>;
  }
  return r;
}

/** The toolkit image the options name: -i, $CRASHCART_IMAGE, the default one, or the default plus --add. */
export function toolkitImage(args: AttachArgs) {
  return resolveImage({
    image: args.image ?? process.env.CRASHCART_IMAGE,
    progress: progress(args.verbose),
    insecureImage: args['insecure-image'],
    ...(args.add.length ? { add: args.add } : {}),
  });
}

/** How the options say to run the command, for each target alike. */
export function commandOptions(args: AttachArgs) {
  return {
    keep: args.keep,
    user: args.user,
    workdir: args.workdir,
    env: args.env,
    targetEnv: args['target-env'],
    joinCgroup: args.cgroup,
    targetCaps: args.caps === 'target',
    audit: args.audit,
  };
}

/** Whether the command line asks for a sandbox (--stopped, --rootfs, --from-image or their options). */
const sandboxed = (a: AttachArgs) => a.stopped || a.rootfs !== undefined || a['from-image'] !== undefined || a.entrypoint || a.net !== undefined || a['rw-volumes'];

export async function attach(args: AttachArgs, command: string[], load?: number): Promise<number> {
  // loaded only when used: plain attaches do not pay for it
  if (sandboxed(args)) return (await import('./stopped.js')).stopped(args, command);
  if (isFanOut(args)) {
    await preflight(args, command);
    // loaded only for several targets: it reads the commands' output through node:net
    const { fanOut } = await import('./fanout.js');
    return fanOut(args, command, load);
  }
  const timing = stopwatch({ load });
  try {
    return await attachTimed(args, command, timing);
  } finally {
    const line = timing.line();
    if (line) process.stderr.write(`crashcart: ${line}\n`);
  }
}

/** What is checked before anything is looked up, built or grafted. */
async function preflight(args: AttachArgs, command: string[]): Promise<void> {
  requireRoot('crashcart');
  configuredFault(); // a mistyped CRASHCART_FAULT is refused before anything happens
  await checkArgs(args, command);
  new StateStore().checkTrust();
}

async function attachTimed(args: AttachArgs, command: string[], timing: Stopwatch): Promise<number> {
  await preflight(args, command);
  const log = logger(args.verbose);
  const target = await findTarget(args);
  const via = args.exec ? runtimeExecutor(target) : undefined;
  log(`target: ${target.runtime} ${target.id} (pid ${target.pid})`);
  const facts = inspectTarget(target.pid, { allowHost: args['allow-host'], what: describeTarget(target) });
  timing.lap('lookup');
  const audited = (entry: Parameters<typeof writeAudit>[0]) => {
    const why = writeAudit(args.audit ? entry : { event: entry.event, noAudit: true });
    if (why) warn(why);
  };
  const auditTarget = { runtime: target.runtime, id: target.id, ...(target.name ? { name: target.name } : {}), pid: target.pid };

  if (args.unmount) {
    const { removed, sessions } = await unmount(target, facts, { log });
    audited({ event: 'unmount', target: auditTarget, exitCode: 0 });
    if (!removed && sessions > 0) {
      process.stderr.write(`crashcart: ${sessions} session(s) still use the toolkit; it goes when the last one ends\n`);
    }
    return 0;
  }

  const image = await toolkitImage(args);
  log(`image: ${image.path}${image.built ? ' (built now)' : ''}`);
  const sha256 = await recordedDigest(image.path);
  timing.lap('image');
  const graft = { image: image.path, method: args.method, allowHost: args['allow-host'], log, warn };
  if (args['mount-only']) {
    const rec = await mountOnly(target, facts, graft);
    audited({ event: 'mount', target: auditTarget, image: { path: image.path, sha256 }, method: rec.method, exitCode: 0 });
    log('the toolkit stays at /dev/crashcart until crashcart -u');
    return 0;
  }
  return runSession(target, facts, {
    ...graft,
    command,
    interactive: isatty(0),
    ...commandOptions(args),
    runtimeExec: via,
    imageSha256: sha256,
    timing,
  });
}

/** Options that are wrong whatever the target: refused before anything is looked at. */
async function checkArgs(args: AttachArgs, command: string[]): Promise<void> {
  for (const o of ['image', 'user', 'workdir', 'runtime', 'namespace', 'pod', 'container', 'k8s-namespace'] as const) {
    if (args[o] === '') throw new CrashcartError(`--${o} needs a value`, { hint: 'see crashcart --help' });
  }
  if (args['mount-only'] && args.unmount) throw new CrashcartError('--mount-only and --unmount exclude each other', { hint: 'give one of them' });
  if (args.add.length) {
    if (args.image !== undefined) throw new CrashcartError('--add and --image exclude each other', { hint: '--add builds on the default toolkit; to add to your image, build it with crashcart image build --add ... -o FILE' });
    if (args.unmount) throw new CrashcartError('--add applies to grafting, and --unmount takes the toolkit out', { hint: 'drop --add' });
    // the names are checked before anything is looked up (profile.ts: loaded only for --add)
    const { attachAdds } = await import('../../image/profile.js');
    attachAdds(args.add, []);
  }
  const noCommand = args.unmount ? '--unmount' : args['mount-only'] ? '--mount-only' : undefined;
  if (noCommand) {
    if (command.length > 0) throw new CrashcartError(`${noCommand} runs no command, but one was given: ${command.join(' ')}`, { hint: `drop the command, or ${noCommand}` });
    if (args.unmount && args.keep) throw new CrashcartError('--keep and --unmount exclude each other', { hint: 'give one of them' });
    const forCommand = [
      args.exec && '--exec',
      args.user !== undefined && '--user',
      args.workdir !== undefined && '--workdir',
      args.env.length > 0 && '--env',
      !args['target-env'] && '--no-target-env',
      !args.cgroup && '--no-cgroup',
      args.caps === 'target' && '--caps target',
    ].find(Boolean);
    if (forCommand) throw new CrashcartError(`${forCommand} applies to a command, and ${noCommand} runs none`, { hint: `drop ${forCommand}, or ${noCommand}` });
  }
  if (args.exec) {
    const clash = [
      !args['target-env'] && '--no-target-env',
      !args.cgroup && '--no-cgroup',
      args.caps === 'target' && '--caps target',
    ].find(Boolean);
    if (clash) throw new CrashcartError(`--exec and ${clash} exclude each other`, { hint: "with --exec the runtime's exec decides the command's environment and cgroup" });
  }
  if (args.workdir !== undefined && !args.workdir.startsWith('/')) {
    throw new CrashcartError(`--workdir ${args.workdir}: not an absolute path`, { hint: 'give the absolute path of a directory in the container' });
  }
  if (args.user !== undefined) checkUserSpec(args.user);
  envAssignments(args.env);
  checkTargets(args, command);
}

/** Several targets (t1,t2 or --all) and the options that go with them. */
function checkTargets(args: AttachArgs, command: string[]): void {
  if (args.all && args.target !== undefined) {
    throw new CrashcartError(`--all and the target ${args.target} exclude each other`, { hint: 'give one; with --all, the words after the options are the command' });
  }
  if (!isFanOut(args)) {
    const several = [args.filter.length > 0 && '--filter', args.parallel !== undefined && '--parallel', !args.prefix && '--no-prefix', args.json && '--json'].find(Boolean);
    if (several) throw new CrashcartError(`${several} applies to several targets`, { hint: 'name them as t1,t2,t3 or pick them with --all' });
    return;
  }
  if (args.target?.split(',').some((w) => w === '')) {
    throw new CrashcartError(`the target list '${args.target}' has an empty name`, { hint: 'separate the names with single commas: t1,t2,t3' });
  }
  if (args.filter.length > 0 && !args.all) throw new CrashcartError('--filter applies to --all', { hint: 'add --all, or list the targets as t1,t2,t3' });
  for (const f of args.filter) parseFilter(f);
  if (args.parallel !== undefined && !(Number.isInteger(args.parallel) && args.parallel >= 1)) {
    throw new CrashcartError(`--parallel ${args.parallel}: not a positive whole number`, { hint: 'give how many targets may run at once, e.g. --parallel 4' });
  }
  const one = [args['mount-only'] && '--mount-only', args.unmount && '--unmount', args.pod !== undefined && '--pod'].find(Boolean);
  if (one) throw new CrashcartError(`${one} takes one target`, { hint: 'run it once for each target' });
  if (command.length === 0) {
    throw new CrashcartError('several targets need a command: an interactive shell runs in one target at a time', {
      hint: `give the command after --, e.g. crashcart ${args.all ? '--all' : args.target} -- ps`,
    });
  }
}

/** The positional target, or the container of --pod. */
async function findTarget(args: AttachArgs): Promise<Target> {
  if (args.pod === undefined) {
    for (const o of ['container', 'k8s-namespace'] as const) {
      if (args[o] !== undefined) throw new CrashcartError(`--${o} applies to --pod only`, { hint: 'add --pod NAME, or drop it' });
    }
    if (args.target === undefined) throw new CrashcartError('no target given', { hint: 'name a container ID, name or PID, or a pod with --pod' });
    return resolveTarget(args.target, args.runtime, args.namespace === undefined ? {} : { namespace: args.namespace }, { warn });
  }
  if (args.target !== undefined) {
    throw new CrashcartError(`--pod ${args.pod} and the target ${args.target} exclude each other`, {
      hint: 'give one; with --pod, the words after the options are the command',
    });
  }
  // loaded only when used: plain attaches do not pay for it
  const { findPod } = await import('../../runtimes/kubernetes.js');
  return findPod(
    { pod: args.pod, namespace: args['k8s-namespace'] ?? 'default', ...(args.container !== undefined ? { container: args.container } : {}) },
    { runtime: args.runtime, containerdNamespace: args.namespace },
  );
}
