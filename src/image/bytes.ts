// Same-length string replacement inside binaries: paths compiled into a program or library
// are redirected into the prefix without moving any other byte.
import assert from 'node:assert/strict';

/** A size for people: '5.8 MiB'. */
export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** Replaces every occurrence of `from` in `buf` (in place) by the same-length `to`. */
export function replaceBytes(buf: Buffer, from: string, to: string): number {
  const a = Buffer.from(from);
  const b = Buffer.from(to);
  assert.equal(b.length, a.length, `replacement for ${from} must be ${a.length} bytes`);
  let count = 0;
  for (let i = buf.indexOf(a); i !== -1; i = buf.indexOf(a, i + a.length)) {
    b.copy(buf, i);
    count++;
  }
  return count;
}
