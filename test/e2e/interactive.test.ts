// On a terminal: an interactive bash with the toolkit's prompt and job control, Ctrl-C that
// reaches the command and not crashcart, and the shell's exit code as crashcart's. tmux
// gives the session a real terminal; send-keys types, capture-pane reads the screen.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { privateDirs, testImage } from '../helpers/cli.js';
import { assertNoLeaks, projectRoot, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';

const tmux = (...args: string[]) => execa('tmux', ['-L', socket, ...args], { stdin: 'ignore' });
const socket = `crashcart-test-${process.pid}`;

async function screen(): Promise<string> {
  return (await tmux('capture-pane', '-p', '-t', 'cc')).stdout;
}

async function waitForScreen(pattern: RegExp, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await screen();
    if (pattern.test(s)) return s;
    if (Date.now() > deadline) assert.fail(`screen never matched ${pattern}:\n${s}`);
    await delay(50);
  }
}

describe('interactive', () => {
  let c: ScratchContainer | undefined;
  after(async () => {
    await tmux('kill-server').catch(() => {});
    await c?.remove();
  });

  test('bash on a terminal: prompt, job control, Ctrl-C, exit code', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'tmux') || !requireCommand(t, 'runc')) return;
    const image = await testImage();
    c = await createScratchContainer({ sleeperPath: await sleeperPath(), hostname: 'tty-test' });
    const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
    const { state, cache } = privateDirs();
    const cli = join(projectRoot(), 'bin', 'crashcart');
    await tmux('new-session', '-d', '-s', 'cc', '-x', '100', '-y', '30', '/bin/sh');
    await tmux('set', '-t', 'cc', 'remain-on-exit', 'on');
    await tmux('send-keys', '-t', 'cc', `CRASHCART_STATE_DIR=${state} CRASHCART_CACHE_DIR=${cache} ${cli} -i ${image} ${c.id}; echo "crashcart exited $?"`, 'Enter');

    await waitForScreen(/^\[crashcart tty-test \/\]#/m);
    await tmux('send-keys', '-t', 'cc', 'sleep 100 &', 'Enter');
    await tmux('send-keys', '-t', 'cc', 'jobs', 'Enter');
    await waitForScreen(/\[1\]\+\s+Running\s+sleep 100 &/);
    await tmux('send-keys', '-t', 'cc', 'kill %1; sleep 50', 'Enter');
    await delay(300);
    await tmux('send-keys', '-t', 'cc', 'C-c');
    await tmux('send-keys', '-t', 'cc', 'echo "after ctrl-c: $?"', 'Enter');
    await waitForScreen(/^after ctrl-c: 130$/m);
    await tmux('send-keys', '-t', 'cc', 'exit 3', 'Enter');
    await waitForScreen(/^crashcart exited 3$/m);

    assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
  });

  test('--exec on a terminal: runc exec --tty gives the same prompt, and its exit code', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'tmux') || !requireCommand(t, 'runc') || !c) return;
    const image = await testImage();
    const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
    const { state, cache } = privateDirs();
    const cli = join(projectRoot(), 'bin', 'crashcart');
    await tmux('send-keys', '-t', 'cc', 'clear', 'Enter');
    await tmux('send-keys', '-t', 'cc', `CRASHCART_STATE_DIR=${state} CRASHCART_CACHE_DIR=${cache} ${cli} -i ${image} --exec ${c.id}; echo "exec exited $?"`, 'Enter');
    await waitForScreen(/^\[crashcart tty-test \/\]#/m);
    await tmux('send-keys', '-t', 'cc', 'tty; cat /proc/1/comm', 'Enter');
    await waitForScreen(/^\/dev\/pts\/\d+\nsleeper$/m);
    await tmux('send-keys', '-t', 'cc', 'exit 4', 'Enter');
    await waitForScreen(/^exec exited 4$/m);
    assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
  });
});
