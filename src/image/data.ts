// The data a relocated toolkit's programs read (terminfo, the C.utf8 locale, magic.mgc, a CA
// bundle, services and protocols), taken from the packages that carry it, and the search
// paths compiled into libraries pointed at it.
import { copyFile, lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { replaceBytes } from './bytes.js';
import { isElf } from './elf.js';
import { imageError } from './errors.js';
import { PREFIX } from './prefix.js';
import type { Extracted } from './relocate.js';
import { exists, listDir } from './files.js';

/** terminfo entries taken from ncurses-term, on top of ncurses-base's. */
const TERMINFO_EXTRA = [
  'a/alacritty', 'a/alacritty-direct', 'k/kitty', 'k/kitty-direct', 'p/putty', 'p/putty-256color',
  's/st', 's/st-256color', 's/screen.xterm-new', 's/screen-256color-bce-s', 't/tmux-direct', 'v/vte', 'v/vte-256color',
  'g/gnome', 'g/gnome-256color', 'k/konsole', 'k/konsole-256color', 'x/xterm-direct', 'x/xterm-new', 'r/rxvt-256color',
  'l/linux-16color', 'm/ms-terminal',
];

/**
 * nmap's data for port scans, host discovery and version detection (-sV), which starts the
 * scripting engine: its core, with no scripts (an empty script.db). The scripts and their
 * libraries (-sC, --script: 13 MB of Lua) and the OS fingerprints (-O: 5 MB) are left out.
 */
const NMAP_DATA = [
  'nmap-services', 'nmap-protocols', 'nmap-rpc', 'nmap-mac-prefixes', 'nmap-payloads', 'nmap-service-probes',
  'nse_main.lua', 'nselib/stdnse.lua', 'nselib/strict.lua', 'nselib/tableaux.lua', 'nselib/lpeg-utility.lua',
];

const TMUX_CONF = '/etc/tmux.conf:~/.tmux.conf:$XDG_CONFIG_HOME/tmux/tmux.conf:~/.config/tmux/tmux.conf\0';

/** libcrypto's OPENSSLDIR in the toolkit: as long as Debian's /usr/lib/ssl, and never there. */
export const NO_OPENSSLDIR = '/proc/0//ssl';

/** A NUL-terminated `${PREFIX}/${rest}` as long as `from`, extra slashes after the prefix. */
export function paddedPath(from: string, rest: string): string {
  const pad = Buffer.byteLength(from) - Buffer.byteLength(`${PREFIX}/${rest}\0`);
  if (pad < 0) throw new Error(`${PREFIX}/${rest} is longer than ${from}`);
  return `${PREFIX}/${'/'.repeat(pad)}${rest}\0`;
}

export interface PathPatch {
  file: string;
  from: string;
  to: string;
  /** a link at the prefix's root that `to` names */
  link?: { name: string; target: string };
}

/**
 * Default search paths compiled into libraries and programs, pointed into the prefix so that
 * tools find their data even when started without the toolkit's bashrc (`crashcart TARGET
 * -- htop`). Same-length replacements: a short link at the prefix's root to the real place,
 * or the real place with slashes to make up the length (paddedPath):
 * - libtinfo: the toolkit's terminfo first, then /etc/terminfo (what ncurses reads for the
 *   empty entries) and /usr/share/terminfo; the container's /lib/terminfo drops out, the
 *   toolkit carries the same ncurses-base entries.
 * - libmagic: the container's /etc/magic (local additions, as on Debian), then ours.
 * - ltrace: its prototypes of libc functions (without them it prints raw numbers).
 * - libxtables, libcrypto: their plugin directories (MODULE_DIRS in relocate.ts); libcrypto's
 *   configuration directory, which points nowhere (see below).
 * - tmux: its configuration files; sar: its data collector.
 */
export const PATH_PATCHES: readonly PathPatch[] = [
  {
    file: 'lib/libtinfo.so.6',
    from: '/etc/terminfo:/lib/terminfo:/usr/share/terminfo\0',
    to: `${PREFIX}/t${':'.repeat(11)}:/usr/share/terminfo\0`,
    link: { name: 't', target: 'share/terminfo' },
  },
  {
    file: 'lib/libmagic.so.1',
    from: '/etc/magic:/usr/share/misc/magic\0',
    to: `/etc/magic:${PREFIX}//magic\0`,
    link: { name: 'magic.mgc', target: 'share/misc/magic.mgc' },
  },
  {
    file: 'bin/ltrace',
    from: '/etc/ltrace.conf\0',
    to: `${PREFIX}/l\0`,
    link: { name: 'l', target: 'etc/ltrace.conf' },
  },
  // iptables' and nft's extensions (XTABLES_LIBDIR); MODULE_DIRS in relocate.ts
  {
    file: 'lib/libxtables.so.12',
    from: '/usr/lib/x86_64-linux-gnu/xtables\0',
    to: paddedPath('/usr/lib/x86_64-linux-gnu/xtables\0', 'lib/xtables'),
  },
  // OpenSSL's providers and engines (OPENSSL_MODULES, OPENSSL_ENGINES): the toolkit's own,
  // never the container's; `openssl version -a` says so.
  ...[['MODULESDIR', 'ossl-modules'], ['ENGINESDIR', 'engines-3']].flatMap(([key, dir]) => {
    const from = `/usr/lib/x86_64-linux-gnu/${dir}\0`;
    const shown = `${key}: "/usr/lib/x86_64-linux-gnu/${dir}"\0`;
    const to = `${key}: "${PREFIX}/lib/${dir}"`;
    return [
      { file: 'lib/libcrypto.so.3', from, to: paddedPath(from, `lib/${dir}`) },
      { file: 'lib/libcrypto.so.3', from: shown, to: `${to}${' '.repeat(Buffer.byteLength(shown) - Buffer.byteLength(to) - 1)}\0` },
    ];
  }),
  // OPENSSLDIR, where libcrypto finds openssl.cnf: a configuration can load modules by path,
  // so the container's is never read. The path is too short to point into the prefix; it
  // names a directory that cannot exist (procfs has no /proc/0). `openssl` itself runs with
  // the toolkit's openssl.cnf (its wrapper sets OPENSSL_CONF). The trusted certificates are
  // other strings, and stay the container's (/usr/lib/ssl/certs, /usr/lib/ssl/cert.pem).
  { file: 'lib/libcrypto.so.3', from: '/usr/lib/ssl\0', to: `${NO_OPENSSLDIR}\0` },
  { file: 'lib/libcrypto.so.3', from: 'OPENSSLDIR: "/usr/lib/ssl"\0', to: `OPENSSLDIR: "${NO_OPENSSLDIR}"\0` },
  // tmux reads the toolkit's tmux.conf only (a shell, and no file of the container's); it is
  // wrapped (libexec/), unless a profile has no wrapper for it
  ...['libexec/tmux', 'bin/tmux'].map((file) => ({ file, from: TMUX_CONF, to: paddedPath(TMUX_CONF, 'etc/tmux.conf') })),
  // sar starts sysstat's data collector
  {
    file: 'bin/sar.sysstat',
    from: '/usr/lib/sysstat/sadc\0',
    to: paddedPath('/usr/lib/sysstat/sadc\0', 'sadc'),
    link: { name: 'sadc', target: 'libexec/sadc' },
  },
];

export async function patchSearchPaths(root: string): Promise<void> {
  for (const p of PATH_PATCHES) {
    const dir = dirname(p.file);
    let path = join(root, p.file);
    if (!(await exists(path))) continue;
    while ((await lstat(path)).isSymbolicLink()) path = join(root, dir, basename(await readlink(path)));
    const buf = await readFile(path);
    if (!isElf(buf)) continue; // a wrapper: the program is in libexec/
    if (replaceBytes(buf, p.from, p.to) < 1) {
      throw imageError('EBUILD', `${dir}/${basename(path)} does not contain ${JSON.stringify(p.from.replace(/\0$/, ''))}, so it cannot be pointed into the prefix`, { hint: 'its package changed: report it' });
    }
    await writeFile(path, buf);
    if (p.link) await symlink(p.link.target, join(root, p.link.name));
  }
}

/** Data the tools read, from the packages that have it, under the prefix. */
export async function copyData(pkgs: Extracted[], root: string): Promise<void> {
  const by = (name: string) => pkgs.find((p) => p.name === name)?.dir;
  const copyTree = async (src: string, dest: string): Promise<void> => {
    const st = await lstat(src).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      await mkdir(dest, { recursive: true });
      for (const n of (await readdir(src)).sort()) await copyTree(join(src, n), join(dest, n));
    } else if (st.isSymbolicLink()) {
      if (!(await exists(dest))) await symlink(await readlink(src), dest);
    } else if (st.isFile()) {
      await mkdir(dirname(dest), { recursive: true });
      await copyFile(src, dest);
    }
  };

  const terminfo = join(root, 'share', 'terminfo');
  const base = by('ncurses-base');
  if (base) {
    await copyTree(join(base, 'lib', 'terminfo'), terminfo);
    await copyTree(join(base, 'usr', 'share', 'terminfo'), terminfo);
  }
  const term = by('ncurses-term');
  if (term) {
    for (const entry of TERMINFO_EXTRA) {
      const src = join(term, 'usr', 'share', 'terminfo', entry);
      // a few entries are symlinks to others: copy what they point at
      const real = (await lstat(src).catch(() => undefined))?.isSymbolicLink() ? join(dirname(src), await readlink(src)) : src;
      if (await exists(real)) {
        await mkdir(join(terminfo, dirname(entry)), { recursive: true });
        if (!(await exists(join(terminfo, entry)))) await copyFile(real, join(terminfo, entry));
      }
    }
  }
  const libc = by('libc-bin');
  if (libc) await copyTree(join(libc, 'usr', 'lib', 'locale', 'C.utf8'), join(root, 'share', 'locale', 'C.utf8'));
  const mgc = by('libmagic-mgc');
  if (mgc) await copyTree(join(mgc, 'usr', 'lib', 'file', 'magic.mgc'), join(root, 'share', 'misc', 'magic.mgc'));
  const ltrace = by('ltrace');
  if (ltrace) await copyTree(join(ltrace, 'etc', 'ltrace.conf'), join(root, 'etc', 'ltrace.conf'));
  // nmap looks in <its directory>/../share/nmap before its compiled-in /usr/share/nmap
  const nmap = by('nmap-common');
  if (nmap) {
    for (const f of NMAP_DATA) await copyTree(join(nmap, 'usr', 'share', 'nmap', f), join(root, 'share', 'nmap', f));
    await mkdir(join(root, 'share', 'nmap', 'scripts'), { recursive: true });
    await writeFile(join(root, 'share', 'nmap', 'scripts', 'script.db'), '');
  }
  // what `openssl req`, `ca` and friends read (wrap/openssl names it in OPENSSL_CONF)
  const openssl = by('openssl');
  if (openssl) await copyTree(join(openssl, 'etc', 'ssl', 'openssl.cnf'), join(root, 'etc', 'ssl', 'openssl.cnf'));
  const netbase = by('netbase');
  if (netbase) {
    for (const f of ['services', 'protocols']) await copyTree(join(netbase, 'etc', f), join(root, 'etc', f));
  }
  const ca = by('ca-certificates');
  if (ca) {
    // ca-certificates makes the bundle in its postinst: the same, from the .crt files
    const dir = join(ca, 'usr', 'share', 'ca-certificates');
    const crts: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const n of (await listDir(d)).sort()) {
        const p = join(d, n);
        if ((await lstat(p)).isDirectory()) await walk(p);
        else if (n.endsWith('.crt')) crts.push(p);
      }
    };
    await walk(dir);
    if (crts.length) {
      const parts = await Promise.all(crts.map((p) => readFile(p, 'utf8')));
      await mkdir(join(root, 'etc', 'ssl', 'certs'), { recursive: true });
      await writeFile(join(root, 'etc', 'ssl', 'certs', 'ca-certificates.crt'), parts.map((t) => (t.endsWith('\n') ? t : `${t}\n`)).join(''));
    }
  }
}
