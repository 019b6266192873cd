// Fetches .deb files with the host's apt into a private directory. Nothing is installed and
// the host's package state never changes; downloaded files are reused while they match the
// candidate version's checksum. Every apt call rebuilds apt's package cache in memory
// (~0.5 s here), so each step asks about all packages at once.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { causeLine, imageError } from './errors.js';
import { sweepDeadTemps } from './temp.js';

const DOWNLOAD_TMP = /^\.download-(\d+)-/;

export interface DebInfo {
  name: string;
  version: string; // '1:1.35.0-4+deb12u1+b1'
  arch: string; // 'amd64'
  sha256: string;
}

// LC_ALL=C keeps apt's messages parseable; the sandbox user is root because our download
// directory is root's 0700 cache, which apt's _apt user cannot write.
const APT_ENV = { LC_ALL: 'C' };
const APT_OPTS = ['-q', '-o', 'APT::Sandbox::User=root'];

function downloadFailed(name: string, why: string, cause?: unknown): Error {
  return imageError('EBUILD', `apt-get download ${name} failed: ${why}`, { hint: "run 'apt-get update' first", cause });
}

/** The stanzas of `apt-cache show` output, as field maps. */
export function parseStanzas(text: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  let cur: Record<string, string> = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) {
      if (Object.keys(cur).length) out.push(cur);
      cur = {};
      continue;
    }
    const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (m) cur[m[1]!] = m[2]!;
  }
  if (Object.keys(cur).length) out.push(cur);
  return out;
}

/** apt-get download names files <name>_<version>_<arch>.deb with ':' quoted as %3a. */
export function debFileName(deb: Pick<DebInfo, 'name' | 'version' | 'arch'>): string {
  return `${deb.name}_${deb.version.replaceAll(':', '%3a')}_${deb.arch}.deb`;
}

/** The versions apt would download now, from the host's package lists, in `names` order. */
export async function candidates(names: string[]): Promise<DebInfo[]> {
  const res = await execa('apt-cache', ['show', '--no-all-versions', ...names], { env: APT_ENV, stdin: 'ignore', reject: false });
  if (res.failed && !res.stdout) throw downloadFailed(names[0] ?? '', causeLine(res), res);
  const stanzas = parseStanzas(res.stdout);
  return names.map((name) => {
    const f = stanzas.find((s) => s['Package'] === name);
    if (!f) throw downloadFailed(name, "apt's package lists do not know it");
    // Without package lists apt-cache only knows dpkg's status record, which has no checksum.
    if (!f['Version'] || !f['Architecture'] || !f['SHA256']) throw downloadFailed(name, "no downloadable version in apt's package lists");
    return { name, version: f['Version'], arch: f['Architecture'], sha256: f['SHA256'].toLowerCase() };
  });
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Whether `dir` already holds the .deb of `deb` with the expected checksum. */
async function isCached(deb: DebInfo, dir: string): Promise<boolean> {
  return (await sha256File(join(dir, debFileName(deb))).catch(() => '')) === deb.sha256;
}

/**
 * Paths of the .deb files of `debs` in `dir`, downloading those not there yet. Downloads land
 * in a private subdirectory and are renamed into place, so concurrent builds sharing `dir`
 * never see a partial file.
 */
export async function fetchDebs(debs: DebInfo[], dir: string, report?: (deb: DebInfo, cached: boolean) => void): Promise<string[]> {
  const missing: DebInfo[] = [];
  for (const deb of debs) {
    const cached = await isCached(deb, dir);
    report?.(deb, cached);
    if (!cached) missing.push(deb);
  }
  if (missing.length) {
    // our pid in the name: a build killed mid-download leaves it to the next one to sweep
    await sweepDeadTemps(dir, DOWNLOAD_TMP);
    const tmp = await mkdtemp(join(dir, `.download-${process.pid}-`));
    try {
      try {
        await execa('apt-get', [...APT_OPTS, 'download', ...missing.map((d) => `${d.name}=${d.version}`)], {
          cwd: tmp,
          env: APT_ENV,
          stdin: 'ignore',
        });
      } catch (err) {
        throw downloadFailed(missing.map((d) => d.name).join(' '), causeLine(err), err);
      }
      for (const deb of missing) {
        const got = join(tmp, debFileName(deb));
        const sum = await sha256File(got).catch(() => '');
        if (sum !== deb.sha256) {
          throw downloadFailed(deb.name, sum ? `checksum of ${debFileName(deb)} does not match apt's package lists` : `${debFileName(deb)} was not written`);
        }
        await rename(got, join(dir, debFileName(deb)));
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  return debs.map((deb) => join(dir, debFileName(deb)));
}

/** One package's dependencies from `apt-cache depends`: groups of alternatives, each
 *  alternative a package name and the packages that provide it. */
export type DependsGraph = Map<string, { name: string; providers: string[] }[][]>;

/** Parses `apt-cache depends --recurse` output ('|' joins an alternative to the next one). */
export function parseDepends(text: string): DependsGraph {
  const graph: DependsGraph = new Map();
  let groups: { name: string; providers: string[] }[][] | undefined;
  let open = false; // the last alternative ended with '|'
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (!line.startsWith(' ')) {
      groups = [];
      graph.set(line.trim(), groups);
      open = false;
      continue;
    }
    const dep = /^ ([ |])(?:Pre)?Depends: (\S+)$/.exec(line);
    if (dep && groups) {
      const alt = { name: dep[2]!, providers: [] as string[] };
      if (open) groups[groups.length - 1]!.push(alt);
      else groups.push([alt]);
      open = dep[1] === '|';
      continue;
    }
    const provider = /^ {4}(\S+)$/.exec(line);
    if (provider && groups?.length) groups[groups.length - 1]!.at(-1)!.providers.push(provider[1]!);
  }
  return graph;
}

/**
 * The packages `roots` need, roots first then the rest sorted: from each group of
 * alternatives the first that is already chosen, else the first real, not excluded package
 * (a virtual one stands for its providers). A group with nothing allowed is left out:
 * excluded packages are meant to be missing, and a library that really is needed is caught
 * later by the DT_NEEDED check.
 */
export function walkDepends(graph: DependsGraph, roots: string[], excluded: (name: string) => boolean): string[] {
  const chosen = new Set<string>();
  const real = (n: string) => graph.has(n) && !n.startsWith('<') && !n.includes(':');
  const queue = [...roots];
  for (const r of roots) chosen.add(r);
  while (queue.length) {
    for (const group of graph.get(queue.shift()!) ?? []) {
      const options = group.flatMap((alt) => [alt.name, ...alt.providers]);
      if (options.some((n) => chosen.has(n))) continue;
      const pick = options.find((n) => real(n) && !excluded(n));
      if (pick === undefined) continue;
      chosen.add(pick);
      queue.push(pick);
    }
  }
  const deps = [...chosen].filter((n) => !roots.includes(n)).sort();
  return [...roots, ...deps];
}

/** `roots` and their dependency closure (Depends and Pre-Depends), in one apt call. */
export async function dependencyClosure(roots: string[], excluded: (name: string) => boolean): Promise<string[]> {
  const res = await execa(
    'apt-cache',
    ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', ...roots],
    { env: APT_ENV, stdin: 'ignore', reject: false },
  );
  if (res.failed && !res.stdout) throw downloadFailed(roots[0] ?? '', causeLine(res), res);
  const graph = parseDepends(res.stdout);
  const unknown = roots.find((r) => !graph.has(r));
  if (unknown !== undefined) throw downloadFailed(unknown, "apt's package lists do not know it");
  return walkDepends(graph, roots, excluded);
}
