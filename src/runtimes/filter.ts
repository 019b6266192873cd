// --all --filter: which of the running containers a command goes to.
//   name=GLOB        the container's name or ID matches the glob (* ? [...]); several name
//                    filters: any of them (as docker's --filter name=)
//   label=KEY        the container has the label
//   label=KEY=VALUE  the label has this value; several label filters: each of them
import { CrashcartError } from '../core/errors.js';
import type { Container } from './types.js';

export type Filter = { kind: 'name'; glob: string; re: RegExp } | { kind: 'label'; key: string; value?: string };

const HINT = 'give --filter name=GLOB or --filter label=KEY[=VALUE]';

/** A glob as an anchored regular expression: * any run, ? one character, [...] a class. */
export function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      const body = glob.slice(i + 1, close).replace(/\\/g, '\\\\');
      re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
      i = close;
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function parseFilter(text: string): Filter {
  const eq = text.indexOf('=');
  const kind = eq < 0 ? text : text.slice(0, eq);
  const rest = eq < 0 ? '' : text.slice(eq + 1);
  if (kind === 'name') {
    if (!rest) throw new CrashcartError(`--filter ${text}: the name glob is empty`, { hint: HINT });
    return { kind, glob: rest, re: globRegExp(rest) };
  }
  if (kind === 'label') {
    const eq2 = rest.indexOf('=');
    const key = eq2 < 0 ? rest : rest.slice(0, eq2);
    if (!key) throw new CrashcartError(`--filter ${text}: the label key is empty`, { hint: HINT });
    return eq2 < 0 ? { kind, key } : { kind, key, value: rest.slice(eq2 + 1) };
  }
  throw new CrashcartError(`--filter ${text}: unknown filter '${kind}'`, { hint: HINT });
}

/** Does the container pass the filters: any name filter (if there are some) and every label filter. */
export function matches(c: Container, filters: Filter[]): boolean {
  const names = filters.filter((f) => f.kind === 'name');
  if (names.length && !names.some((f) => f.re.test(c.name ?? '') || f.re.test(c.id))) return false;
  return filters.every((f) => f.kind !== 'label' || (c.labels !== undefined && f.key in c.labels && (f.value === undefined || c.labels[f.key] === f.value)));
}
