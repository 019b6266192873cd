// What crashcart(1) and `crashcart --help` list, to hold one against the other: the unit
// tests with the checkout's CLI, the .deb's test with the installed page and /usr/bin/crashcart.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { execa } from 'execa';
import type { CliSpec, CommandSpec } from '../../src/cli/spec.js';
import { projectRoot } from './host.js';

/**
 * The long options `crashcart PATH --help` lists ('--image', '--no-audit' is written '--audit').
 * `crashcart` is the program and its first arguments: the checkout's bin/crashcart by default.
 */
export async function helpOptions(path: string[], crashcart = [process.execPath, join(projectRoot(), 'bin', 'crashcart')]): Promise<string[]> {
  const [file, ...args] = crashcart;
  const r = await execa(file!, [...args, ...path, '--help'], { env: { COLUMNS: '200' } });
  const section = r.stdout.split(/^Options:$/m)[1] ?? '';
  // a short flag is named once, before its long one ("-v, -v, --verbose" is an option defined twice)
  for (const line of section.split('\n').filter((l) => /^ {2}-/.test(l))) assert.match(line, /^ {2}-\w, --/, `crashcart ${path.join(' ')} --help: ${line.trim()}`);
  // option lines only: "  -i, --image" or "      --user"; wrapped descriptions are indented further
  return [...section.matchAll(/^ {2}(?:-\w, | {4})--([\w-]+)/gm)].map((m) => m[1]!).sort();
}

/** The long options of one command's part of the man page (roff source). */
export function manOptions(page: string, heading: string): string[] {
  const start = page.indexOf(heading);
  assert.ok(start >= 0, `no ${heading} in the man page`);
  const rest = page.slice(start + heading.length);
  const end = rest.search(/^\.S[HS] /m);
  const part = end < 0 ? rest : rest.slice(0, end);
  // each option item: ".TP" then the option words on one line
  const items = [...part.matchAll(/^\.TP\n(.*)$/gm)].map((m) => m[1]!).filter((l) => l.startsWith('\\fB\\-'));
  return items.map((l) => /\\fB\\-\\-([\w\\-]+)\\fR/.exec(l)![1]!.replace(/\\-/g, '-')).sort();
}

/** Every command below the top, with its path of words. */
export function commands(spec: CliSpec): { path: string[]; cmd: CommandSpec }[] {
  const out: { path: string[]; cmd: CommandSpec }[] = [];
  const walk = (cmd: CommandSpec, path: string[]) => {
    for (const c of cmd.commands) {
      out.push({ path: [...path, c.name], cmd: c });
      walk(c, [...path, c.name]);
    }
  };
  walk(spec, []);
  return out;
}
