// crashcart(1) and the completion scripts are made from the yargs definitions; these tests
// hold them against what `crashcart --help` prints for every command, so none can drift.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { bashScript, cliSpec, coreScript, zshScript } from '../../src/cli/commands/completion.js';
import { targetWords } from '../../src/cli/commands/complete.js';
import { ENVIRONMENT, EXIT_CODES, FILES, manPage, roff } from '../../src/cli/man.js';
import type { CliSpec, CommandSpec } from '../../src/cli/spec.js';
import { projectRoot } from '../helpers/host.js';

/** The long options --help lists ('--image', '--no-audit' is written '--audit'). */
async function helpOptions(path: string[]): Promise<string[]> {
  const r = await execa(process.execPath, [join(projectRoot(), 'bin', 'crashcart'), ...path, '--help'], { env: { COLUMNS: '200' } });
  const section = r.stdout.split(/^Options:$/m)[1] ?? '';
  // option lines only: "  -i, --image" or "      --user"; wrapped descriptions are indented further
  return [...section.matchAll(/^ {2}(?:-\w, | {4})--([\w-]+)/gm)].map((m) => m[1]!).sort();
}

/** The long options of one command's part of the man page. */
function manOptions(page: string, heading: string): string[] {
  const start = page.indexOf(heading);
  assert.ok(start >= 0, `no ${heading} in the man page`);
  const rest = page.slice(start + heading.length);
  const end = rest.search(/^\.S[HS] /m);
  const part = end < 0 ? rest : rest.slice(0, end);
  // each option item: ".TP" then the option words on one line
  const items = [...part.matchAll(/^\.TP\n(.*)$/gm)].map((m) => m[1]!).filter((l) => l.startsWith('\\fB\\-'));
  return items.map((l) => /\\fB\\-\\-([\w\\-]+)\\fR/.exec(l)![1]!.replace(/\\-/g, '-')).sort();
}

function commands(spec: CliSpec): { path: string[]; cmd: CommandSpec }[] {
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

describe('crashcart(1)', async () => {
  const spec = await cliSpec();
  const page = manPage(spec, '0.1.0', '2026-12-01');

  test('lists exactly the options of crashcart --help, with the global ones', async () => {
    assert.deepEqual(manOptions(page, '.SH OPTIONS'), await helpOptions([]));
  });

  for (const { path } of commands(spec)) {
    test(`lists exactly the options of crashcart ${path.join(' ')} --help`, async () => {
      // the global options (--verbose, --version, --help) are listed once, under OPTIONS
      const global = spec.global.map((o) => o.name);
      const own = (await helpOptions(path)).filter((o) => !global.includes(o));
      assert.deepEqual(manOptions(page, `.SS \\fBcrashcart ${roff(path.join(' '))}\\fR`), own);
    });
  }

  test('has every section a man page needs, with the exit codes, environment and files', () => {
    for (const s of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'COMMANDS', 'EXIT STATUS', 'ENVIRONMENT', 'FILES', 'EXAMPLES']) {
      assert.match(page, new RegExp(`^\\.SH ${s}$`, 'm'));
    }
    for (const [code] of EXIT_CODES) assert.ok(page.includes(`\\fB${roff(code)}\\fR`), code);
    for (const [name] of ENVIRONMENT) assert.ok(page.includes(roff(name)), name);
    for (const path of ['/var/lib/crashcart', '/run/crashcart', '/var/log/crashcart/audit.log']) assert.ok(FILES.some(([p]) => p === path) && page.includes(roff(path)), path);
    assert.match(page, /^\.TH CRASHCART 1 "2026-12-01" "crashcart 0\.1\.0"/);
  });

  test('roff: a line cannot start a request, dashes are minus signs', () => {
    assert.equal(roff(".x 'y\n-a\\b"), '\\&.x \'y\n\\-a\\eb');
  });
});

describe('completion scripts', async () => {
  const spec = await cliSpec();

  test('offer every option --help lists, for every command', async () => {
    const core = coreScript(spec);
    for (const path of [[], ...commands(spec).map((c) => c.path)]) {
      const line = core.split('\n').find((l) => l.startsWith(`    '${path.join(' ')}') opts=`));
      assert.ok(line, `no case for '${path.join(' ')}'`);
      const opts = /opts='([^']*)'/.exec(line!)![1]!.split(' ');
      for (const o of await helpOptions(path)) assert.ok(opts.includes(`--${o}`), `crashcart ${path.join(' ')}: --${o} is not offered`);
    }
  });

  test('bash and zsh share the core and register themselves', () => {
    assert.ok(bashScript(spec).includes(coreScript(spec)));
    assert.ok(zshScript(spec).includes(coreScript(spec)));
    assert.match(bashScript(spec), /^complete -F _crashcart crashcart$/m);
    assert.match(zshScript(spec), /^#compdef crashcart$/m);
  });

  test('targets are running containers by name and short ID', () => {
    const long = 'a'.repeat(64);
    assert.deepEqual(targetWords([
      { id: long, name: 'web', pid: 10, status: 'running' },
      { id: 'db', pid: 11, status: 'running' },
      { id: 'old', name: 'gone', pid: 0, status: 'stopped' },
      { id: 'db', pid: 11, status: 'running' },
    ]), ['web', 'a'.repeat(12), 'db']);
  });
});
