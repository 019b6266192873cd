// crashcart(1) and the completion scripts are made from the yargs definitions; these tests
// hold them against what `crashcart --help` prints for every command, so none can drift.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bashScript, cliSpec, coreScript, zshScript } from '../../src/cli/commands/completion.js';
import { targetWords } from '../../src/cli/commands/complete.js';
import { ENVIRONMENT, EXIT_CODES, FILES, manPage, roff } from '../../src/cli/man.js';
import { commands, helpOptions, manOptions } from '../helpers/manpage.js';

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
