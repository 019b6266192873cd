// crashcart __complete WHAT: the values a completion script cannot know by itself, one a
// line: `targets` (the running containers of every runtime present, by name and short ID:
// the lookups of `crashcart ps`, each runtime asked once) and `images` (the cached toolkit
// images). Someone is waiting at a prompt: whatever has not answered when the time is up is
// left out, and nothing is ever printed on stderr.
import { readdirSync } from 'node:fs';
import { imagesDir } from '../../image/store.js';

/** The whole answer, Node's start included, is due within this. */
export const COMPLETE_BUDGET_MS = 300;
/** what is kept back for printing and exiting */
const MARGIN_MS = 30;

/** What a user types for a container: its name, and its ID (cut to 12 when it is a 64-hex one). */
export function targetWords(cs: { id: string; name?: string; pid: number; status: string }[]): string[] {
  const words = cs
    .filter((c) => c.status === 'running' && c.pid > 0)
    .flatMap((c) => [...(c.name ? [c.name] : []), /^[0-9a-f]{64}$/.test(c.id) ? c.id.slice(0, 12) : c.id]);
  return [...new Set(words)];
}

async function targets(): Promise<string[]> {
  const { RUNTIMES, listAmong } = await import('../../runtimes/index.js');
  const left = COMPLETE_BUDGET_MS - MARGIN_MS - process.uptime() * 1000;
  const { containers } = await listAmong(RUNTIMES.filter((r) => r.present()), Math.max(left, 20));
  return targetWords(containers);
}

function images(): string[] {
  try {
    return readdirSync(imagesDir()).filter((f) => f.endsWith('.img')).map((f) => f.slice(0, -'.img'.length)).sort();
  } catch {
    return [];
  }
}

export async function complete(args: string[]): Promise<number> {
  let words: string[] = [];
  try {
    if (args[0] === 'targets') words = await targets();
    else if (args[0] === 'images') words = images();
    else return 2;
  } catch {
    return 1; // a completion that fails completes nothing
  }
  process.stdout.write(words.map((w) => `${w}\n`).join(''));
  return 0;
}

/** bin/crashcart's entry for `crashcart __complete ...`: the CLI's parser is never loaded. */
export async function run(): Promise<void> {
  process.exitCode = await complete(process.argv.slice(3));
}
