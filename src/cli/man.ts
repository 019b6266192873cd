// crashcart(1), written from the yargs definitions that --help shows (src/cli/spec.ts), so
// the man page cannot name an option the program does not have, or miss one. The prose
// around them (exit codes, environment, files, examples) is here.
import { optionWords, type CliSpec, type CommandSpec, type OptionSpec } from './spec.js';

/** roff-safe text: backslashes, dashes, and a line that would start with a request. */
export function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

const bold = (s: string) => `\\fB${roff(s)}\\fR`;
const italic = (s: string) => `\\fI${roff(s)}\\fR`;

export const EXIT_CODES: [string, string][] = [
  ['the command\'s', 'the command ran and exited with this code'],
  ['128+N', 'the command was killed by signal N'],
  ['125', 'crashcart itself failed: not root, target not found or not running, bad image, graft failed, bad options or environment'],
  ['126', 'the command exists but cannot be run: not executable, a directory, its #! interpreter or ELF loader missing in the container, or its arguments too long'],
  ['127', 'the command was not found'],
  ['130, 143, 129', 'crashcart was interrupted (SIGINT, SIGTERM, SIGHUP) before the command started: the attach was rolled back'],
];

export const ENVIRONMENT: [string, string][] = [
  ['CRASHCART_IMAGE', 'toolkit image, as -i'],
  ['CRASHCART_IMAGE_URL, CRASHCART_IMAGE_SHA256', 'with no cached image, pull this one instead of building'],
  ['CRASHCART_CACHE_DIR', 'image cache and .deb downloads (default /var/lib/crashcart, root-only)'],
  ['CRASHCART_STATE_DIR', 'session state (default /run/crashcart, root-only; refused if anyone else could write to it)'],
  ['CRASHCART_AUDIT_LOG', 'the audit log (default /var/log/crashcart/audit.log)'],
  ['CRASHCART_FAULT', 'for tests: inject a fault at a named step, POINT[:fail|kill|stop]'],
  ['CRASHCART_RUNC_ROOT, CRASHCART_CRUN_ROOT', "the runtimes' state roots (default /run/runc, /run/crun)"],
  ['DOCKER_HOST', "Docker's socket, as unix:///path (default /var/run/docker.sock)"],
  ['CONTAINERS_STORAGE_CONF, CONTAINERS_CONF', "podman's storage and engine configuration, read as podman reads them"],
  ['CONTAINERD_ADDRESS', "containerd's socket (default /run/containerd/containerd.sock)"],
  ['CRASHCART_CONTAINERD_STATE', "containerd's state directory (default /run/containerd)"],
  ['CRASHCART_LXC_PATH', "LXC's lxcpath (default: lxc.lxcpath in /etc/lxc/lxc.conf, else /var/lib/lxc)"],
  ['CRASHCART_NSPAWN_DIR', 'nspawn containers are looked for only when this exists (default /run/systemd/nspawn)'],
];

export const FILES: [string, string][] = [
  ['/var/lib/crashcart', 'the image cache: images/NAME.img with a sidecar NAME.img.json, and debs/, the downloaded Debian packages (CRASHCART_CACHE_DIR)'],
  ['/run/crashcart', 'session state: which targets have the toolkit grafted, from which loop device, and which sessions use it; under a lock (CRASHCART_STATE_DIR)'],
  ['/var/log/crashcart/audit.log', 'one JSON line for every attach, -m, -u and gc (CRASHCART_AUDIT_LOG)'],
  ['/dev/crashcart', 'inside the container: the toolkit, mounted read-only, nosuid, nodev'],
];

export const EXAMPLES: [string, string][] = [
  ['crashcart web', 'a shell in container web, whatever its runtime, with the toolkit on PATH'],
  ['crashcart web ps -ef', 'one command (the first word after the target that is not an option starts it)'],
  ["echo 'ss -ltnp; lsof -p 1' | crashcart web > report.txt", 'commands from stdin when it is not a terminal'],
  ['crashcart --pod api-7d9f --container app --k8s-namespace prod -- strace -p 1', 'a container of a Kubernetes pod, on its node'],
  ['crashcart -m web && crashcart -u web', 'graft the toolkit and leave it there; take it out again'],
  ['crashcart ps', 'the running containers of every runtime, and where the toolkit is'],
  ['crashcart image build --profile minimal', 'a smaller toolkit image in the cache'],
  ['crashcart demo', 'a disposable scratch container to try it on'],
];

function optionItem(o: OptionSpec): string {
  const words = optionWords(o).map((w) => bold(w)).join(', ');
  const value = o.takesValue ? ` ${italic(o.choices ? o.choices.join('|') : o.name.toUpperCase())}` : '';
  const extra: string[] = [];
  if (o.array && !/repeatable/.test(o.describe ?? '')) extra.push('repeatable');
  if (o.default !== undefined && !(Array.isArray(o.default) && o.default.length === 0) && o.type !== 'boolean') extra.push(`default: ${String(o.default)}`);
  return `.TP\n${words}${value}\n${roff(o.describe ?? '')}${extra.length ? ` (${roff(extra.join('; '))})` : ''}`;
}

function commandSection(cmd: CommandSpec, parents: string[]): string[] {
  const path = [...parents, cmd.name];
  const usage = cmd.usage.replace(/^\S+/, '').trim();
  const own = cmd.options.filter((o) => o.name !== 'verbose');
  const lines = [`.SS ${bold(`crashcart ${path.join(' ')}`)}${usage ? ` ${roff(usage)}` : ''}`, roff(cmd.describe)];
  for (const p of cmd.positionals) if (p.describe) lines.push('.TP', italic(p.name), roff(p.describe));
  if (own.length) lines.push('.RS', ...own.map(optionItem), '.RE');
  for (const sub of cmd.commands) lines.push(...commandSection(sub, path));
  return lines;
}

const table = (rows: [string, string][], font = bold) => rows.flatMap(([k, v]) => ['.TP', font(k), roff(v)]);

export function manPage(spec: CliSpec, version: string, date: string): string {
  return [
    `.TH CRASHCART 1 "${date}" "crashcart ${version}" "User Commands"`,
    '.SH NAME',
    'crashcart \\- graft a read-only debugging toolkit into a running container and run a shell in its namespaces',
    '.SH SYNOPSIS',
    ...spec.programUsage.split('\n\n')[0]!.split('\n').flatMap((l) => ['.br', roff(l)]).slice(1),
    ...spec.commands.flatMap((c) => ['.br', `${bold('crashcart')} ${bold(c.name)}${c.commands.length ? ` ${italic(c.commands.map((s) => s.name).join('|'))}` : ''}${c.positionals.map((p) => ` ${italic(p.required ? `<${p.name}>` : `[${p.name}]`)}`).join('')} [${italic('options')}]`]),
    '.SH DESCRIPTION',
    roff(spec.programUsage.split('\n\n').slice(1).join(' ')),
    '.PP',
    roff('crashcart attaches a read-only ext3 toolkit image to a loop device, grafts it at /dev/crashcart inside the container\'s mount namespace and runs /dev/crashcart/bin/bash there, in all of the container\'s namespaces. When the last crashcart session in the container ends, the toolkit is unmounted and the loop device frees itself. It must run as root on the container\'s host (or in a privileged container with the host\'s PID namespace).'),
    '.PP',
    roff('The target is a container ID, a unique ID prefix or a name, of runc, crun, Docker, Podman, containerd, LXC or systemd-nspawn, or a PID; with --pod, a container of a Kubernetes pod.'),
    roff('The command starts at the first word after the target that is not a crashcart option, or after a -- that follows crashcart\'s options. Without one, crashcart runs an interactive bash when stdin is a terminal, and bash -s (commands from stdin) when it is not.'),
    '.SH OPTIONS',
    ...[...spec.options, ...spec.global].map(optionItem),
    '.SH COMMANDS',
    ...spec.commands.flatMap((c) => commandSection(c, [])),
    '.SH EXIT STATUS',
    ...table(EXIT_CODES),
    '.PP',
    roff('Every failure is one line on stderr, crashcart: <what failed>; <what to do>, and leaves nothing behind.'),
    '.SH ENVIRONMENT',
    ...table(ENVIRONMENT),
    '.SH FILES',
    ...table(FILES, italic),
    '.SH EXAMPLES',
    ...EXAMPLES.flatMap(([cmd, what]) => ['.TP', bold(cmd), roff(what)]),
    '.SH SEE ALSO',
    'nsenter(1), runc(8), docker(1), kubectl(1)',
    '',
  ].join('\n');
}
