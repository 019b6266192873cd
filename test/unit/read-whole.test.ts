// readWhole (native/file.cc): how bin/crashcart reads the bundle and its code cache, once,
// into pages V8 then uses in place. Every byte must come back as it is in the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readWhole } from '../../src/native/index.js';

/** Runs fn with an fd of a scratch file holding `bytes`; closes and removes it after. */
function withFile(bytes: Buffer, fn: (fd: number) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-read-'));
  const file = join(dir, 'f');
  writeFileSync(file, bytes);
  const fd = openSync(file, 'r');
  try {
    fn(fd);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a file comes back whole, as latin1 text and as bytes, from offset 0 whatever the fd has read', () => {
  // every byte value, and more than a page and a readahead window
  const bytes = Buffer.alloc(300_000 + 7, 0);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
  withFile(bytes, (fd) => {
    const text = readWhole(fd, 'latin1');
    assert.equal(typeof text, 'string');
    assert.equal(text, bytes.toString('latin1'));
    const ab = readWhole(fd, 'bytes');
    assert.ok(ab instanceof ArrayBuffer);
    assert.ok(Buffer.from(ab as ArrayBuffer).equals(bytes));
  });
});

test('an empty file is an empty string and an empty ArrayBuffer', () => {
  withFile(Buffer.alloc(0), (fd) => {
    assert.equal(readWhole(fd, 'latin1'), '');
    assert.equal((readWhole(fd, 'bytes') as ArrayBuffer).byteLength, 0);
  });
});

test('what is not a regular file is refused with EINVAL', () => {
  const fd = openSync('/dev/null', 'r');
  try {
    assert.throws(() => readWhole(fd, 'bytes'), { code: 'EINVAL', syscall: 'read' });
  } finally {
    closeSync(fd);
  }
});
