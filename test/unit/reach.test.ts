// crashcart forward's and cp's words and formats: the port syntax, names as a container's
// /etc/hosts has them, which side of a copy is the container's, tar streams both ways, and
// names that must never lead out of a destination.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { listenAddresses } from '../../src/cli/commands/forward.js';
import { cpPlan, parseCpSide } from '../../src/cli/commands/cp.js';
import { newStats, safeComponents, tarEntries, writeTar, type Entry } from '../../src/core/copy.js';
import { CrashcartError } from '../../src/core/errors.js';
import { addressBytes, errnoText, lookupHosts, parseForwardSpec, remoteText } from '../../src/core/forward.js';
import { encodeHeader, readTar, END_OF_ARCHIVE, padding } from '../../src/core/tar.js';

const fails = (fn: () => unknown, message: RegExp) => assert.throws(fn, (e: unknown) => e instanceof CrashcartError && message.test(e.message));

describe('forward specs', () => {
  test("kubectl's forms", () => {
    assert.deepEqual(parseForwardSpec('8080'), { local: 8080, remote: { kind: 'tcp', port: 8080 } });
    assert.deepEqual(parseForwardSpec('18080:8080'), { local: 18080, remote: { kind: 'tcp', port: 8080 } });
    assert.deepEqual(parseForwardSpec(':8080'), { local: 0, remote: { kind: 'tcp', port: 8080 } });
    assert.deepEqual(parseForwardSpec('0:8080'), { local: 0, remote: { kind: 'tcp', port: 8080 } });
  });

  test('a host, an IPv6 address, a unix socket, an abstract socket', () => {
    assert.deepEqual(parseForwardSpec('15432:db:5432'), { local: 15432, remote: { kind: 'tcp', host: 'db', port: 5432 } });
    assert.deepEqual(parseForwardSpec('9000:[::1]:80'), { local: 9000, remote: { kind: 'tcp', host: '::1', port: 80 } });
    assert.deepEqual(parseForwardSpec('5432:/run/postgresql/.s.PGSQL.5432'), { local: 5432, remote: { kind: 'unix', path: '/run/postgresql/.s.PGSQL.5432' } });
    assert.deepEqual(parseForwardSpec(':@admin'), { local: 0, remote: { kind: 'abstract', name: 'admin' } });
  });

  test('what the start line shows', () => {
    assert.equal(remoteText(parseForwardSpec('8080').remote), '8080');
    assert.equal(remoteText(parseForwardSpec('1:db:5432').remote), 'db:5432');
    assert.equal(remoteText(parseForwardSpec('1:[::1]:80').remote), '[::1]:80');
    assert.equal(remoteText(parseForwardSpec('1:/run/x.sock').remote), '/run/x.sock');
    assert.equal(remoteText(parseForwardSpec('1:@adm').remote), '@adm');
  });

  test('bad ports and forms are refused in one line', () => {
    fails(() => parseForwardSpec('0'), /invalid forward '0': port '0' is not a port \(1-65535\)/);
    fails(() => parseForwardSpec('70000'), /port '70000' is not a port/);
    fails(() => parseForwardSpec('x:80'), /local port 'x' is not a port \(0-65535\)/);
    fails(() => parseForwardSpec('1:2:3:4'), /invalid forward '1:2:3:4'/);
    fails(() => parseForwardSpec('/run/x.sock'), /a unix socket needs a local port/);
    fails(() => parseForwardSpec('1:@'), /the abstract socket has no name/);
    fails(() => parseForwardSpec('1:[zz]:80'), /'zz' is not an IPv6 address/);
  });

  test('listen addresses', () => {
    assert.deepEqual(listenAddresses(['127.0.0.1']), ['127.0.0.1']);
    assert.deepEqual(listenAddresses(['localhost,::1', '0.0.0.0', '127.0.0.1']), ['127.0.0.1', '::1', '0.0.0.0']);
    fails(() => listenAddresses(['example.com']), /invalid --address 'example.com': not an IP address/);
  });
});

describe("a container's /etc/hosts", () => {
  const hosts = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n# 10.0.0.9 db\n172.17.0.3\tweb-db db   # the database\nfe80::1%eth0 linklocal\n';
  test('names resolve to their addresses, IPv4 first; comments are no entries', () => {
    assert.deepEqual(lookupHosts(hosts, 'db'), [{ family: 4, address: '172.17.0.3' }]);
    assert.deepEqual(lookupHosts(hosts, 'LOCALHOST'), [{ family: 4, address: '127.0.0.1' }, { family: 6, address: '::1' }]);
    assert.deepEqual(lookupHosts(hosts, 'ip6-localhost'), [{ family: 6, address: '::1' }]);
    assert.deepEqual(lookupHosts(hosts, 'linklocal'), [{ family: 6, address: 'fe80::1' }]);
    assert.deepEqual(lookupHosts(hosts, 'nope'), []);
  });

  test('addresses as connect() takes them', () => {
    assert.deepEqual([...addressBytes({ family: 4, address: '10.1.2.3' })], [10, 1, 2, 3]);
    assert.equal(addressBytes({ family: 6, address: '::1' }).toString('hex'), '00000000000000000000000000000001');
    assert.equal(addressBytes({ family: 6, address: 'fe80::1:2' }).toString('hex'), 'fe800000000000000000000000010002');
    assert.equal(addressBytes({ family: 6, address: '::ffff:10.0.0.1' }).toString('hex'), '00000000000000000000ffff0a000001');
    assert.equal(addressBytes({ family: 6, address: '2001:db8:0:0:0:0:0:5' }).toString('hex'), '20010db8000000000000000000000005');
  });

  test('errno numbers in words', () => {
    assert.equal(errnoText(111), 'ECONNREFUSED (connection refused)');
  });
});

describe('cp arguments', () => {
  test("docker cp's rule for which side is the container's", () => {
    assert.deepEqual(parseCpSide('web:/etc/hosts'), { kind: 'target', target: 'web', path: '/etc/hosts' });
    assert.deepEqual(parseCpSide('web:etc'), { kind: 'target', target: 'web', path: '/etc' });
    assert.deepEqual(parseCpSide('web:'), { kind: 'target', target: 'web', path: '/' });
    assert.deepEqual(parseCpSide('./a:b'), { kind: 'host', path: './a:b' });
    assert.deepEqual(parseCpSide('/tmp/a:b'), { kind: 'host', path: '/tmp/a:b' });
    assert.deepEqual(parseCpSide('file'), { kind: 'host', path: 'file' });
    assert.deepEqual(parseCpSide('-'), { kind: 'stream' });
  });

  test('exactly one side is a container', () => {
    assert.equal(cpPlan('web:/etc', '.').direction, 'out');
    assert.equal(cpPlan('-', 'web:/tmp').direction, 'in');
    fails(() => cpPlan('a:/x', 'b:/y'), /copies between a container and the host, not between two containers/);
    fails(() => cpPlan('x', 'y'), /neither 'x' nor 'y' names a container/);
    fails(() => parseCpSide(':/x'), /no target before ':'/);
  });

  test("names that lead out of the destination are refused; '.', '' and a leading / are dropped", () => {
    assert.deepEqual(safeComponents('./a//b/'), ['a', 'b']);
    assert.deepEqual(safeComponents('/etc/passwd'), ['etc', 'passwd']);
    assert.equal(safeComponents('a/../../etc'), undefined);
    assert.equal(safeComponents('..'), undefined);
    assert.deepEqual(safeComponents('.'), []);
  });
});

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function bytesOf(it: AsyncIterable<Buffer>): Promise<Buffer> {
  return Buffer.concat(await collect(it));
}

describe('tar streams', () => {
  const longName = `${'d'.repeat(120)}/${'f'.repeat(130)}`;
  const entry = (e: Partial<Entry> & Pick<Entry, 'path' | 'type'>): Entry => ({ mode: 0o644, uid: 0, gid: 0, size: 0, atime: [1_700_000_000, 0], mtime: [1_700_000_000, 0], ...e });
  const file = (path: string[], text: string, more: Partial<Entry> = {}) =>
    entry({ path, type: 'file', size: Buffer.byteLength(text), content: async function* () { yield Buffer.from(text); }, ...more });

  async function roundTrip(entries: Entry[], top: string): Promise<Array<{ e: Entry; body?: string }>> {
    const chunks: Buffer[] = [];
    const out = new (await import('node:stream')).PassThrough();
    out.on('data', (c: Buffer) => chunks.push(c));
    await writeTar((async function* () { yield* entries; })(), out, top, newStats());
    // fed back in small pieces: headers and contents cross chunk boundaries
    const all = Buffer.concat(chunks);
    const pieces = Array.from({ length: Math.ceil(all.length / 777) }, (_, i) => all.subarray(i * 777, (i + 1) * 777));
    const got: Array<{ e: Entry; body?: string }> = [];
    for await (const e of tarEntries(Readable.from(pieces), () => assert.fail('nothing is skipped'))) {
      got.push({ e, ...(e.content ? { body: (await bytesOf(e.content())).toString() } : {}) });
    }
    return got;
  }

  test('what is written is read back: names long and short, links, modes, ids, times', async () => {
    const got = await roundTrip([
      entry({ path: [], type: 'dir', mode: 0o755 }),
      file(['a.txt'], 'hello', { uid: 1000, gid: 1000, mode: 0o4755, mtime: [1_600_000_000, 0] }),
      entry({ path: ['link'], type: 'symlink', link: '/etc/passwd' }),
      entry({ path: ['long'], type: 'symlink', link: 'x'.repeat(300) }),
      file([longName], 'far'),
      entry({ path: ['hard'], type: 'hardlink', link: 'a.txt' }),
      entry({ path: ['fifo'], type: 'fifo', mode: 0o600 }),
      file(['big-ids'], '', { uid: 4_000_000_000, gid: 3_000_000 }),
    ], 'top');
    assert.deepEqual(got.map((g) => [g.e.path.join('/'), g.e.type]), [
      ['top', 'dir'], ['top/a.txt', 'file'], ['top/link', 'symlink'], ['top/long', 'symlink'], [`top/${longName}`, 'file'],
      ['top/hard', 'hardlink'], ['top/fifo', 'fifo'], ['top/big-ids', 'file'],
    ]);
    assert.equal(got[1]!.body, 'hello');
    assert.equal(got[1]!.e.mode, 0o4755);
    assert.deepEqual([got[1]!.e.uid, got[1]!.e.gid, got[1]!.e.mtime[0]], [1000, 1000, 1_600_000_000]);
    assert.equal(got[2]!.e.link, '/etc/passwd');
    assert.equal(got[3]!.e.link, 'x'.repeat(300));
    assert.equal(got[4]!.body, 'far');
    assert.equal(got[5]!.e.link, 'top/a.txt');
    assert.deepEqual([got[7]!.e.uid, got[7]!.e.gid], [4_000_000_000, 3_000_000]);
  });

  test("GNU tar's own archive reads (long names, base-256 not needed)", async () => {
    const { execa } = await import('execa');
    const { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/crashcart-unit-tar-');
    try {
      mkdirSync(`${dir}/t/${'n'.repeat(150)}`, { recursive: true });
      writeFileSync(`${dir}/t/${'n'.repeat(150)}/file`, 'gnu');
      symlinkSync('../escape', `${dir}/t/link`);
      for (const format of ['gnu', 'posix', 'ustar', 'v7']) {
        const name = format === 'ustar' || format === 'v7' ? 'short' : 'n'.repeat(150);
        if (format === 'ustar') {
          mkdirSync(`${dir}/t/short`, { recursive: true });
          writeFileSync(`${dir}/t/short/file`, 'gnu');
        }
        const tar = await execa('tar', ['-C', dir, `--format=${format}`, '-cf', '-', `t/${name}/file`, 't/link'], { encoding: 'buffer', stdin: 'ignore' });
        const got: Array<[string, string, string | undefined, string | undefined]> = [];
        for await (const e of tarEntries(Readable.from([Buffer.from(tar.stdout)]), () => {})) {
          got.push([e.path.join('/'), e.type, e.link, e.content ? (await bytesOf(e.content())).toString() : undefined]);
        }
        assert.deepEqual(got, [[`t/${name}/file`, 'file', undefined, 'gnu'], ['t/link', 'symlink', '../escape', undefined]], format);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a member named with '..' is skipped, and one whose hard link points out of the archive", async () => {
    const h = (name: string, type: 'file' | 'hardlink', linkName = '') =>
      encodeHeader({ name, type, mode: 0o644, uid: 0, gid: 0, size: type === 'file' ? 1 : 0, mtime: 0, linkName, devMajor: 0, devMinor: 0 });
    const stream = Buffer.concat([h('../../etc/cron.d/x', 'file'), Buffer.from('x'), padding(1), h('ok', 'hardlink', '../../etc/shadow'), h('fine', 'file'), Buffer.from('y'), padding(1), END_OF_ARCHIVE]);
    const skipped: string[] = [];
    const got = await collect(tarEntries(Readable.from([stream]), (n, why) => skipped.push(`${n}: ${why}`)));
    assert.deepEqual(got.map((e) => e.path.join('/')), ['fine']);
    assert.deepEqual(skipped, ["../../etc/cron.d/x: its name leads out of the destination ('..')", "ok: its hard link target '../../etc/shadow' is outside the archive"]);
  });

  test('garbage and truncation are errors, not silence', async () => {
    await assert.rejects(collect(readTar(Readable.from([Buffer.alloc(512, 'x')]), () => {})), /bad checksum/);
    await assert.rejects(collect(readTar(Readable.from([]), () => {})), /empty/);
    const h = encodeHeader({ name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 10_000, mtime: 0, linkName: '', devMajor: 0, devMinor: 0 });
    await assert.rejects((async () => {
      for await (const m of readTar(Readable.from([h, Buffer.alloc(100)]), () => {})) await bytesOf(m.content());
    })(), /ends in the middle of a member/);
  });
});
