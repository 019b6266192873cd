// On a terminal: an interactive bash with the toolkit's prompt and job control, Ctrl-C that
// reaches the command and not crashcart, and the shell's exit code as crashcart's. tmux
// gives the session a real terminal; send-keys types, capture-pane reads the screen.
import { after, describe, test } from 'node:test';
import { join } from 'node:path';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { cliEnvWords, testImage } from '../helpers/cli.js';
import { assertNoLeaks, projectRoot, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { cmdline, descendants } from '../helpers/procs.js';
import { startTerminal, stopTerminals, type Terminal } from '../helpers/terminal.js';
import { waitFor } from '../helpers/wait.js';

const PROMPT = /^\[crashcart tty-test \/\]#/m;

/** `argv` running below `shell` as the foreground process group of its terminal. */
const inForeground = (shell: number, argv: string) =>
  descendants(shell).some((p) => p.tpgid === p.pgrp && cmdline(p.pid).join(' ') === argv);

describe('interactive', () => {
  let c: ScratchContainer | undefined;
  let term: Terminal | undefined;
  after(async () => {
    await stopTerminals();
    await c?.remove();
  });

  /** crashcart's command line in the terminal's shell, with this process's private directories. */
  const crashcart = (args: string) => `${cliEnvWords()} ${join(projectRoot(), 'bin', 'crashcart')} ${args}`;

  test('bash on a terminal: prompt, job control, Ctrl-C, exit code', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'tmux') || !requireCommand(t, 'runc')) return;
    const image = await testImage();
    c = await createScratchContainer({ sleeperPath: await sleeperPath(), hostname: 'tty-test' });
    const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
    term = await startTerminal('cc');

    await term.step(PROMPT, [`${crashcart(`-i ${image} ${c.id}`)}; echo "crashcart exited $?"`, 'Enter']);
    await term.step(/\[1\]\+\s+Running\s+sleep 100 &/, ['sleep 100 &', 'Enter'], ['jobs', 'Enter']);
    await term.send('kill %1; sleep 50', 'Enter');
    // Ctrl-C must find sleep 50 holding the terminal, not bash between two commands
    const shell = await term.pid();
    await waitFor('sleep 50 runs in the foreground of the terminal', () => inForeground(shell, 'sleep 50'));
    await term.step(/^after ctrl-c: 130$/m, ['C-c'], ['echo "after ctrl-c: $?"', 'Enter']);
    await term.step(/^crashcart exited 3$/m, ['exit 3', 'Enter']);

    assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
  });

  test('--exec on a terminal: runc exec --tty gives the same prompt, and its exit code', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'tmux') || !requireCommand(t, 'runc') || !c) return;
    const image = await testImage();
    term ??= await startTerminal('cc');
    const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
    // the previous test's prompt is still on the screen: each step clears it first
    await term.step(PROMPT, [`${crashcart(`-i ${image} --exec ${c.id}`)}; echo "exec exited $?"`, 'Enter']);
    await term.step(/^\/dev\/pts\/\d+\nsleeper$/m, ['tty; cat /proc/1/comm', 'Enter']);
    await term.step(/^exec exited 4$/m, ['exit 4', 'Enter']);
    assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
  });
});
