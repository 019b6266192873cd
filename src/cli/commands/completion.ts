// crashcart completion bash|zsh: a completion script made from the yargs definitions
// (src/cli/spec.ts). Options, commands and choices are written into the script, so pressing
// TAB starts no program for them; running containers and cached images come from
// `crashcart __complete targets|images` (commands/complete.ts), which answers within 300 ms.
// One POSIX-ish core serves both shells: it takes the words as arguments and prints the
// candidates one a line (':files' and ':dirs' ask the shell for its own file completion).
import { RUNTIMES } from '../../runtimes/index.js';
import { recordCli, optionWords, type CliSpec, type CommandSpec, type OptionSpec } from '../spec.js';

/** What the value of an option can be, where its definition has no choices. */
const OPTION_VALUES: Record<string, string[]> = {
  image: [':images', ':files'],
  output: [':files'],
  'from-dir': [':dirs'],
  rootfs: [':dirs'],
  runtime: [...RUNTIMES.map((r) => r.name), 'pid', 'crictl'],
};
/** What a positional can be. */
const POSITIONAL_VALUES: Record<string, string[]> = {
  target: [':targets'],
  image: [':images', ':files'],
  // cp's TARGET:PATH on either side, or a host path
  source: [':target-paths', ':files'],
  destination: [':target-paths', ':files'],
};

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function optionValues(o: OptionSpec): string[] {
  return o.choices ? [...o.choices] : OPTION_VALUES[o.name] ?? [];
}

interface Entry { path: string; cmd: CommandSpec }

/** A command's options and the global ones it does not define itself. */
function withGlobal(cmd: CommandSpec, spec: CliSpec): OptionSpec[] {
  return [...cmd.options, ...spec.global.filter((g) => !cmd.options.some((o) => o.name === g.name))];
}

function entries(spec: CliSpec): Entry[] {
  const out: Entry[] = [];
  const walk = (cmd: CommandSpec, path: string) => {
    out.push({ path, cmd });
    for (const c of cmd.commands) walk(c, path ? `${path} ${c.name}` : c.name);
  };
  walk(spec, '');
  return out;
}

/** The shell functions both scripts share. */
export function coreScript(spec: CliSpec): string {
  const all = entries(spec);
  const cases = all.map(({ path, cmd }) => {
    const options = withGlobal(cmd, spec);
    const opts = options.flatMap(optionWords);
    const vopts = options.filter((o) => o.takesValue).flatMap((o) => optionWords(o));
    const pos = cmd.positionals[0];
    const posValues = pos ? (pos.choices ? [...pos.choices] : POSITIONAL_VALUES[pos.name] ?? []) : [];
    return `    ${q(path)}) opts=${q(opts.join(' '))}; vopts=${q(vopts.join(' '))}; subs=${q(cmd.commands.map((c) => c.name).join(' '))}; pos=${q(posValues.join(' '))} ;;`;
  });
  const seen = new Set<string>();
  const valueCases: string[] = [];
  for (const { cmd } of all) {
    for (const o of withGlobal(cmd, spec)) {
      const values = optionValues(o);
      const words = optionWords(o).filter((w) => !w.startsWith('--no-') && !seen.has(w));
      if (!o.takesValue || !values.length || !words.length) continue;
      words.forEach((w) => seen.add(w));
      valueCases.push(`    ${words.join('|')}) printf '%s\\n' ${values.map(q).join(' ')} ;;`);
    }
  }
  return `_crashcart_spec() {
  # $1: the command ('' for an attach, 'image build', ...). Sets opts (its option words),
  # vopts (those that take a value), subs (its commands) and pos (what its argument can be).
  case $1 in
${cases.join('\n')}
    *) opts=; vopts=; subs=; pos= ;;
  esac
}

_crashcart_values() {
  # the candidates for the value of option $1
  case $1 in
${valueCases.join('\n')}
  esac
}

_crashcart_has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }

_crashcart_expand() {
  # $1: the program, then candidates: ':targets' and ':images' are asked of crashcart itself
  local prog=$1 c
  shift
  for c in "$@"; do
    case $c in
      :targets) "$prog" __complete targets 2>/dev/null ;;
      :target-paths) "$prog" __complete targets 2>/dev/null | while IFS= read -r c; do printf '%s:\\n' "$c"; done ;;
      :images) "$prog" __complete images 2>/dev/null ;;
      *) printf '%s\\n' "$c" ;;
    esac
  done
}

_crashcart_candidates() {
  # $1: the index of the word being completed; $2...: the words, the program first.
  # Prints the candidates one a line.
  local cword=$1 prog=$2 i=1 w last= last2= path= npos=0 pod=0 opts vopts subs pos cur
  shift 2
  _crashcart_spec ''
  while [ "$i" -lt "$cword" ] && [ $# -gt 0 ]; do
    w=$1
    shift
    i=$((i + 1))
    last2=$last
    last=$w
    case $w in
      --) return 0 ;; # the command's own words follow
      --pod|--rootfs|--from-image|--all) pod=1 ;; # they name what to open: the command follows
    esac
    case $w in
      -*=*) ;;
      -*)
        # an option's value is the next word (bash splits --opt=value at the '=')
        if _crashcart_has "$vopts" "$w" && [ "$i" -lt "$cword" ]; then
          if [ "$1" = = ] && [ $((i + 1)) -lt "$cword" ]; then shift; i=$((i + 1)); fi
          last2=$w
          last=$1
          shift
          i=$((i + 1))
        fi ;;
      =) ;;
      *)
        if [ "$npos" = 0 ] && _crashcart_has "$subs" "$w"; then
          path=\${path:+$path }$w
          _crashcart_spec "$path"
        elif [ -z "$path" ] && { [ "$pod" = 1 ] || [ "$npos" -ge 1 ]; }; then
          return 0 # the command to run in the container: nothing to offer
        else
          npos=$((npos + 1))
        fi ;;
    esac
  done
  cur=$1
  if [ "$cur" = = ] && _crashcart_has "$vopts" "$last"; then
    _crashcart_expand "$prog" $(_crashcart_values "$last")
  elif [ "$last" = = ] && _crashcart_has "$vopts" "$last2"; then
    _crashcart_expand "$prog" $(_crashcart_values "$last2")
  elif _crashcart_has "$vopts" "$last"; then
    _crashcart_expand "$prog" $(_crashcart_values "$last")
  else
    case $cur in
      -*) printf '%s\\n' $opts ;;
      *)
        [ "$npos" = 0 ] && [ "$pod" = 0 ] && [ -n "$subs" ] && printf '%s\\n' $subs
        [ "$npos" = 0 ] && [ "$pod" = 0 ] && _crashcart_expand "$prog" $pos ;;
    esac
  fi
  return 0
}
`;
}

export function bashScript(spec: CliSpec): string {
  return `# bash completion for crashcart(1): crashcart completion bash
# Installed as /usr/share/bash-completion/completions/crashcart, or: source <(crashcart completion bash)

${coreScript(spec)}
_crashcart() {
  local cur=\${COMP_WORDS[COMP_CWORD]} c
  [ "$cur" = = ] && cur=
  COMPREPLY=()
  while IFS= read -r c; do
    case $c in
      :files) compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -f -- "$cur")) ;;
      :dirs) compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -d -- "$cur")) ;;
      "$cur"*) COMPREPLY+=("$c"); [[ $c == *: ]] && compopt -o nospace 2>/dev/null ;;
    esac
  done < <(_crashcart_candidates "$COMP_CWORD" "\${COMP_WORDS[@]}")
  return 0
}
complete -F _crashcart crashcart
`;
}

export function zshScript(spec: CliSpec): string {
  return `#compdef crashcart
# zsh completion for crashcart(1): crashcart completion zsh
# Installed as /usr/share/zsh/vendor-completions/_crashcart, or: source <(crashcart completion zsh)

${coreScript(spec)}
_crashcart() {
  setopt localoptions shwordsplit
  local -a cands prefixes
  local c
  for c in \${(f)"$(_crashcart_candidates $((CURRENT - 1)) "\${words[@]}")"}; do
    case $c in
      :files) _files ;;
      :dirs) _files -/ ;;
      *:) prefixes+=("$c") ;; # TARGET: of cp, the path follows
      *) cands+=("$c") ;;
    esac
  done
  (( \${#cands} )) && compadd -a cands
  (( \${#prefixes} )) && compadd -S '' -a prefixes
  return 0
}

if [ "$funcstack[1]" = _crashcart ]; then
  _crashcart "$@"
elif (( $+functions[compdef] )); then
  compdef _crashcart crashcart
fi
`;
}

export async function cliSpec(): Promise<CliSpec> {
  const { cliModules, defineCli } = await import('../main.js');
  const m = await cliModules();
  return recordCli((y) => defineCli(y, m));
}

export async function completion(shell: 'bash' | 'zsh'): Promise<number> {
  const spec = await cliSpec();
  process.stdout.write(shell === 'bash' ? bashScript(spec) : zshScript(spec));
  return 0;
}
