// The `crashcart` command that scripts/setup.sh puts in /usr/local/bin (and the benchmark
// runs): a two-line script that starts bin/crashcart with the Node.js running this, the one
// the addon was built for, by its absolute path. bin/crashcart's own `#!/usr/bin/env node`
// costs every run an exec of env and a search of PATH for node (3 to 5 ms here, where
// PATH has a few directories before /usr/bin).
//   node dist/scripts/launcher.js TARGET PATH
import { renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/**
 * The command's text. Node takes a file without an extension for an ES module below a
 * package.json that says "type": "module" (a directory it finds above the command), where
 * there is no `require`: then it makes one (the ES module loader is slower to start, but the
 * command works wherever it is).
 */
export function launcherText(target: string, node: string): string {
  const t = JSON.stringify(target);
  return `#!${node}\n// written by scripts/launcher.ts: ${target}, run by the Node.js it was built for\n` +
    `(typeof require === 'function' ? require : process.getBuiltinModule('node:module').createRequire(${t}))(${t});\n`;
}

/** Writes (or replaces, atomically) the command at `path` that runs `target`. */
export function writeLauncher(target: string, path: string, node = process.execPath): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    // a #! line takes no spaces in its program and at most 255 bytes: else a symlink to target
    if (/\s/.test(node) || node.length > 200) symlinkSync(target, tmp);
    else writeFileSync(tmp, launcherText(target, node), { mode: 0o755 });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [target, path] = process.argv.slice(2);
  if (!target || !path) throw new Error('usage: node dist/scripts/launcher.js TARGET PATH');
  writeLauncher(target, path);
}
