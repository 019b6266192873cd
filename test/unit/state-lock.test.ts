// The state locks: one target's record, or the whole state; holders in one process exclude
// each other as holders in different processes do, and waiting never blocks the event loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lockOffset, StateStore } from '../../src/core/state.js';

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Resolves once `done` holds, looking every millisecond (no deadline: the test's timeout is one). */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await delay(1);
}

function store(): { store: StateStore; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-lock-'));
  return { store: new StateStore(join(dir, 'state')), done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('records of different targets are held at once; one record is held by one holder at a time', async () => {
  const { store: s, done } = store();
  try {
    const events: string[] = [];
    const hold = (key: string, name: string, ms: number) => s.withTargetLock(key, async () => {
      events.push(`${name} in`);
      await delay(ms);
      events.push(`${name} out`);
    });
    await Promise.all([hold('mnt-1', 'a', 60), hold('mnt-2', 'b', 10), delay(5).then(() => hold('mnt-1', 'c', 1))]);
    // b ran inside a's hold; c waited for a
    assert.deepEqual(events, ['a in', 'b in', 'b out', 'a out', 'c in', 'c out']);
  } finally {
    done();
  }
});

test('the whole state waits for every record holder, and they wait for it', async () => {
  const { store: s, done } = store();
  try {
    const events: string[] = [];
    const a = s.withTargetLock('mnt-1', async () => {
      events.push('a in');
      await delay(40);
      events.push('a out');
    });
    await delay(5);
    const all = s.withLock(async () => {
      events.push('all in');
      await delay(40);
      events.push('all out');
    });
    await until(() => events.includes('all in')); // a is out, the sweep is in
    const b = s.withTargetLock('mnt-2', () => void events.push('b'));
    await Promise.all([a, all, b]);
    assert.deepEqual(events, ['a in', 'a out', 'all in', 'all out', 'b']);
  } finally {
    done();
  }
});

test('a holder that throws lets go; the event loop runs while a holder waits', async () => {
  const { store: s, done } = store();
  try {
    await assert.rejects(s.withLock(() => {
      throw new Error('boom');
    }), /boom/);
    // the first holder lets go only once the event loop has run five times: a waiter that
    // blocked the loop would never see it let go
    let ticks = 0;
    const timer = setInterval(() => ticks++, 2);
    const held = s.withTargetLock('mnt-1', () => until(() => ticks >= 5));
    await delay(1);
    await s.withTargetLock('mnt-1', () => {}); // waits for the first
    clearInterval(timer);
    await held;
    assert.ok(ticks >= 5, `the event loop ran ${ticks} times meanwhile`);
  } finally {
    done();
  }
});

test('each key has its byte past byte 0, stable across processes', () => {
  assert.equal(lockOffset('mnt-4026532288'), lockOffset('mnt-4026532288'));
  assert.notEqual(lockOffset('mnt-4026532288'), lockOffset('mnt-4026532289'));
  for (const k of ['', 'mnt-1', 'mnt-4294967295']) assert.ok(lockOffset(k) >= 1 && lockOffset(k) <= 2 ** 32);
});

test('a holder in another process excludes this one, and its death lets go', async () => {
  const { store: s, done } = store();
  const { spawn } = await import('node:child_process');
  const stateJs = new URL('../../src/core/state.js', import.meta.url).href;
  // holds mnt-1 until killed
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    const { StateStore } = await import(${JSON.stringify(stateJs)});
    await new StateStore(${JSON.stringify(s.dir)}).withTargetLock('mnt-1', () => { console.log('held'); return new Promise(() => setInterval(() => {}, 1000)); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`the holder exited ${code}`)));
    });
    let got = false;
    const waiting = s.withTargetLock('mnt-1', () => void (got = true));
    await s.withTargetLock('mnt-2', () => {}); // another record is free
    await delay(50);
    assert.equal(got, false, 'held by the other process');
    child.kill('SIGKILL');
    await waiting;
    assert.equal(got, true);
  } finally {
    child.kill('SIGKILL');
    done();
  }
});
