// `crashcart image pull/ls/inspect/rm` against a local HTTP server on 127.0.0.1: what is
// stored, what is refused, and that a refused or interrupted pull keeps nothing.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { resolveImage } from '../../src/image/cache.js';
import { createScratchContainer } from '../../src/demo/scratch.js';
import { runCrashcart, startCrashcart, testImage } from '../helpers/cli.js';
import { assertNoLeaks, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { until } from '../helpers/wait.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Fixture {
  base: string;
  image: Buffer;
  digest: string;
  junk: Buffer;
  /** A fresh cache directory (not created yet) for one test, removed afterwards. */
  cache: (t: TestContext) => Promise<string>;
}

let fixture: Promise<Fixture> | undefined;
let server: Server | undefined;
let root: string | undefined;

/** A small real ext3 image with a MANIFEST.json, and the server that hands it out. */
function setup(): Promise<Fixture> {
  fixture ??= (async () => {
    root = await mkdtemp(join(tmpdir(), 'crashcart-e2e-pull-'));
    const tree = join(root, 'tree');
    await mkdir(tree);
    await writeFile(join(tree, 'MANIFEST.json'), `${JSON.stringify({ profile: 'test', tools: ['x'] })}\n`);
    const file = join(root, 'src.img');
    await execa('mke2fs', ['-q', '-F', '-t', 'ext3', '-d', tree, file, '2M'], { stdin: 'ignore', env: { LC_ALL: 'C' } });
    const image = await readFile(file);
    const junk = Buffer.alloc(8192, 7);
    const paused: import('node:http').ServerResponse[] = [];
    server = createServer((req, res) => {
      switch (req.url) {
        case '/good.img':
          return res.writeHead(200, { 'content-length': image.length }).end(image);
        case '/junk.img':
          return res.writeHead(200, { 'content-length': junk.length }).end(junk);
        case '/hop':
          return res.writeHead(302, { location: '/good.img' }).end();
        case '/loop':
          return res.writeHead(302, { location: '/loop' }).end();
        case '/truncated.img':
          // promises the whole image, sends half, and hangs up
          res.writeHead(200, { 'content-length': image.length });
          res.write(image.subarray(0, image.length >> 1), () => res.socket?.destroy());
          return;
        case '/stall.img':
          // sends a little and then nothing, until the test ends
          res.writeHead(200, { 'content-length': image.length });
          res.write(image.subarray(0, 4096));
          paused.push(res);
          return;
        default:
          return res.writeHead(404, 'Not Found').end('no\n');
      }
    });
    server.on('close', () => paused.forEach((r) => r.destroy()));
    await new Promise<void>((ok) => server!.listen(0, '127.0.0.1', ok));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cache = async (t: TestContext) => {
      const dir = await mkdtemp(join(root!, 'case-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      return join(dir, 'cache');
    };
    return { base, image, digest: sha(image), junk, cache };
  })();
  return fixture;
}

test.after(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise<void>((ok) => server!.close(() => ok()));
  }
  if (root) await rm(root, { recursive: true, force: true });
});

function ready(t: TestContext): boolean {
  return requireRoot(t) && requireCommand(t, 'mke2fs') && requireCommand(t, 'debugfs');
}

const pull = (cache: string, ...args: string[]) => runCrashcart(['image', 'pull', ...args], { env: { CRASHCART_CACHE_DIR: cache } });

/** The refused pull printed exactly `line` and left nothing in the cache's images/. */
async function assertRefused(r: Awaited<ReturnType<typeof runCrashcart>>, cache: string, line: string): Promise<void> {
  assert.equal(r.code, 125, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `crashcart: ${line}`);
  assert.deepEqual(await readdir(join(cache, 'images')).catch(() => []), []);
}

test('pull with the right digest stores the image; ls, inspect, --image and rm find it', async (t) => {
  if (!ready(t)) return;
  const { base, digest, image } = await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  const env = { CRASHCART_CACHE_DIR: cache };
  const stored = join(cache, 'images', `sha256-${digest}.img`);

  const r = await pull(cache, `${base}/hop`, '--sha256', `sha256:${digest.toUpperCase()}`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${stored}\nsha256:${digest}`);
  assert.equal(r.stderr, '', 'no progress line without a terminal');
  assert.deepEqual(await readFile(stored), image);
  const side = JSON.parse(await readFile(`${stored}.json`, 'utf8')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(side), ['sha256', 'source', 'pulled', 'sizeBytes']);
  assert.equal(side['sha256'], digest);
  assert.equal(side['source'], `${base}/hop`);
  assert.equal(side['sizeBytes'], image.length);
  assert.ok(Math.abs(Date.parse(side['pulled'] as string) - Date.now()) < 60_000);
  assert.deepEqual((await readdir(join(cache, 'images'))).sort(), [`sha256-${digest}.img`, `sha256-${digest}.img.json`]);

  const ls = await runCrashcart(['image', 'ls'], { env });
  assert.equal(ls.code, 0, ls.stderr);
  const lines = ls.stdout.split('\n');
  assert.match(lines[0]!, /^NAME +SHA256 +SIZE +SOURCE +DATE$/);
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, new RegExp(`^sha256-${digest}  ${digest.slice(0, 12)}  2\\.0 MiB  ${base}/hop  \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$`));
  const json = await runCrashcart(['image', 'ls', '--json'], { env });
  const list = JSON.parse(json.stdout) as { name: string; sha256: string; sizeBytes: number; source: string; path: string }[];
  assert.deepEqual(
    list.map(({ name, sha256, sizeBytes, source, path }) => ({ name, sha256, sizeBytes, source, path })),
    [{ name: `sha256-${digest}`, sha256: digest, sizeBytes: image.length, source: `${base}/hop`, path: stored }],
  );

  const ins = await runCrashcart(['image', 'inspect', digest.slice(0, 8)], { env });
  assert.equal(ins.code, 0, ins.stderr);
  const got = JSON.parse(ins.stdout) as { path: string; sidecar: unknown; manifest: unknown };
  assert.equal(got.path, stored);
  assert.deepEqual(got.sidecar, side);
  assert.deepEqual(got.manifest, { profile: 'test', tools: ['x'] });

  // -i / CRASHCART_IMAGE resolution, in this process
  const saved = process.env.CRASHCART_CACHE_DIR;
  process.env.CRASHCART_CACHE_DIR = cache;
  try {
    assert.deepEqual(await resolveImage({ image: digest.slice(0, 6) }), { path: stored, built: false });
    assert.deepEqual(await resolveImage({ image: `sha256-${digest}` }), { path: stored, built: false });
  } finally {
    if (saved === undefined) delete process.env.CRASHCART_CACHE_DIR;
    else process.env.CRASHCART_CACHE_DIR = saved;
  }

  const rmr = await runCrashcart(['image', 'rm', digest.slice(0, 10)], { env });
  assert.equal(rmr.code, 0, rmr.stderr);
  assert.equal(rmr.stdout, stored);
  assert.deepEqual(await readdir(join(cache, 'images')), []);
  const again = await runCrashcart(['image', 'rm', digest.slice(0, 10)], { env });
  assert.equal(again.code, 125);
  assert.equal(again.stderr, `crashcart: image rm ${digest.slice(0, 10)}: no cached image of that name or digest; see 'crashcart image ls'`);
});

test('pull refuses a wrong digest and keeps nothing', async (t) => {
  if (!ready(t)) return;
  const { base, digest } = await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  const wrong = `${digest.slice(0, 63)}${digest.endsWith('0') ? '1' : '0'}`;
  await assertRefused(
    await pull(cache, `${base}/good.img`, '--sha256', wrong),
    cache,
    `pull ${base}/good.img: sha256 mismatch (expected ${wrong}, got ${digest}); nothing was kept`,
  );
});

test('pull refuses a truncated download and keeps nothing', async (t) => {
  if (!ready(t)) return;
  const { base, digest, image } = await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  const r = await pull(cache, `${base}/truncated.img`, '--sha256', digest);
  assert.equal(r.code, 125, r.stderr);
  // how much of the half arrived before the reset depends on the kernel's buffers
  const m = /^crashcart: pull (\S+): truncated download \(got (\d+) of (\d+) bytes\); nothing was kept$/.exec(r.stderr);
  assert.ok(m, r.stderr);
  assert.equal(m[1], `${base}/truncated.img`);
  assert.ok(Number(m[2]) <= image.length >> 1);
  assert.equal(Number(m[3]), image.length);
  await assertRefused(r, cache, r.stderr.slice('crashcart: '.length));
});

test('pull refuses HTTP errors, redirect loops, missing digests and bad URLs', async (t) => {
  if (!ready(t)) return;
  const { base, digest } = await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  await assertRefused(await pull(cache, `${base}/missing.img`, '--sha256', digest), cache, `pull ${base}/missing.img: HTTP 404 Not Found; nothing was kept`);
  await assertRefused(await pull(cache, `${base}/loop`, '--sha256', digest), cache, `pull ${base}/loop: too many redirects (more than 5); nothing was kept`);
  await assertRefused(
    await pull(cache, `${base}/good.img`),
    cache,
    `pull ${base}/good.img: no --sha256 given; pass the published digest with --sha256 HEX (or --insecure to skip the check)`,
  );
  await assertRefused(
    await pull(cache, `${base}/good.img`, '--sha256', 'abc'),
    cache,
    `pull ${base}/good.img: --sha256 'abc' is not a sha256 digest (64 hex digits); give the digest the image was published with`,
  );
  await assertRefused(
    await pull(cache, 'ftp://127.0.0.1/x.img', '--sha256', digest),
    cache,
    'pull ftp://127.0.0.1/x.img: unsupported URL scheme ftp; give an http:// or https:// URL',
  );
});

test('pull refuses a file that is not ext3, even with the right digest', async (t) => {
  if (!ready(t)) return;
  const { base, junk } = await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  await assertRefused(
    await pull(cache, `${base}/junk.img`, '--sha256', sha(junk)),
    cache,
    `pull ${base}/junk.img: not an ext2/3/4 filesystem (no superblock magic); nothing was kept`,
  );
});

test('pull --insecure stores without a digest after one warning line', async (t) => {
  if (!ready(t)) return;
  const { base, digest } = await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  const r = await pull(cache, `${base}/good.img`, '--insecure');
  assert.equal(r.code, 0, r.stderr);
  const stored = join(cache, 'images', `sha256-${digest}.img`);
  assert.equal(r.stdout, `${stored}\nsha256:${digest}`);
  assert.equal(
    r.stderr,
    `crashcart: WARNING: --insecure: the sha256 of ${base}/good.img is NOT checked; whoever can alter this download can run code as root on this host`,
  );
  assert.ok(existsSync(stored) && existsSync(`${stored}.json`));
});

test('an interrupted pull keeps nothing', async (t) => {
  if (!ready(t)) return;
  const { base, digest } = await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  const images = join(cache, 'images');
  const child = startCrashcart(['image', 'pull', `${base}/stall.img`, '--sha256', digest], { env: { CRASHCART_CACHE_DIR: cache } });
  // wait for the temporary file: the download is under way
  await until(async () => (await readdir(images).catch(() => [])).length > 0, { ms: 30_000, every: 25 });
  assert.equal((await readdir(images)).length, 1);
  child.kill('SIGINT');
  const r = await child;
  assert.equal(r.exitCode, 125, r.stderr);
  assert.equal(r.stderr, `crashcart: pull ${base}/stall.img: interrupted by SIGINT; nothing was kept`);
  assert.deepEqual(await readdir(images), []);
});

test('with CRASHCART_IMAGE_URL and no cached image, the first attach pulls it; the next uses the cache', async (t) => {
  if (!ready(t) || !requireCommand(t, 'runc')) return;
  const toolkit = await readFile(await testImage());
  const digest = sha(toolkit);
  let requests = 0;
  const srv = createServer((_req, res) => {
    requests++;
    res.writeHead(200, { 'content-length': toolkit.length }).end(toolkit);
  });
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  t.after(() => new Promise<void>((ok) => srv.close(() => ok())));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/toolkit.img`;
  await setup();
  const cache = await fixture!.then((f) => f.cache(t));
  const c = await createScratchContainer({ sleeperPath: await sleeperPath() });
  t.after(() => c.remove());
  const before = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
  const env = { CRASHCART_CACHE_DIR: cache, CRASHCART_IMAGE_URL: url, CRASHCART_IMAGE_SHA256: digest };

  const first = await runCrashcart([c.id, '--', 'cat', '/proc/1/comm'], { env });
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout, 'sleeper');
  assert.equal(requests, 1);
  assert.deepEqual(await readFile(join(cache, 'images', `sha256-${digest}.img`)), toolkit);

  const second = await runCrashcart([c.id, '--', 'true'], { env });
  assert.equal(second.code, 0, second.stderr);
  assert.equal(requests, 1, 'the cached image is used');

  // a digest that does not match: refused, nothing kept, nothing grafted
  const other = await fixture!.then((f) => f.cache(t));
  const wrong = await runCrashcart([c.id, '--', 'true'], { env: { ...env, CRASHCART_CACHE_DIR: other, CRASHCART_IMAGE_SHA256: 'a'.repeat(64) } });
  assert.equal(wrong.code, 125);
  assert.match(wrong.stderr, /^crashcart: .*sha256/);
  assert.deepEqual(await readdir(join(other, 'images')).catch(() => []), []);
  assertNoLeaks(before, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
});
