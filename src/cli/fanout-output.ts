// What several targets at once print: each line of a command's stdout and stderr, whole,
// prefixed with its target's name (padded, coloured on a terminal, as docker compose's
// log prefixer does), raw (--no-prefix), or as one JSON object per line (--json); then a
// summary of the exit codes on stderr. Pure: no I/O here.

export type Stream = 'stdout' | 'stderr';

/** Splits a stream's bytes into whole lines (without the newline); `end` gives the rest. */
export class LineSplitter {
  private rest = '';
  private readonly decoder = new TextDecoder('utf-8');

  push(chunk: Uint8Array): string[] {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
    const lines = text.split('\n');
    this.rest = lines.pop()!;
    return lines;
  }

  /** The last line when it had no newline (none when the output ended with one). */
  end(): string[] {
    const last = this.rest + this.decoder.decode();
    this.rest = '';
    return last === '' ? [] : [last];
  }
}

// docker compose's colours: cyan, yellow, green, magenta, blue, then their bright variants
const COLOURS = [36, 33, 32, 35, 34, 96, 93, 92, 95, 94];

export interface LineFormat {
  /** the line as written, with its newline, and the stream it goes to */
  (target: string, stream: Stream, text: string): { to: Stream; text: string };
}

/**
 * How each line is written: `name | text` with names padded to the longest (coloured when
 * `colour(stream)` says its destination is a terminal), the text alone (`prefix` false), or
 * {target, stream, text} as JSON on stdout (`json`).
 */
export function lineFormat(names: string[], o: { prefix: boolean; json: boolean; colour: (to: Stream) => boolean }): LineFormat {
  if (o.json) return (target, stream, text) => ({ to: 'stdout', text: `${JSON.stringify({ target, stream, text })}\n` });
  if (!o.prefix) return (_target, stream, text) => ({ to: stream, text: `${text}\n` });
  const width = Math.max(0, ...names.map((n) => n.length));
  const colourOf = new Map(names.map((n, i) => [n, COLOURS[i % COLOURS.length]!]));
  return (target, stream, text) => {
    const prefix = `${target.padEnd(width)} |`;
    const coloured = o.colour(stream) ? `\x1b[${colourOf.get(target) ?? COLOURS[0]}m${prefix}\x1b[0m` : prefix;
    return { to: stream, text: `${coloured} ${text}\n` };
  };
}

/** How one target ended: its command's exit code, or why crashcart could not reach it or run the command. */
export interface TargetResult {
  target: string;
  code: number;
  /** crashcart's one-line message, when the command did not run to its own end */
  error?: string;
}

/** crashcart's own failure (125): the target was not reached. */
export const EXIT_UNREACHED = 125;

/**
 * The summary lines (without 'crashcart: ') and the exit code: 0 only if every target
 * succeeded, else the largest exit code among them (125 for a target crashcart could not
 * reach, each one named).
 */
export function summary(results: TargetResult[]): { lines: string[]; exitCode: number } {
  const width = Math.max(0, ...results.map((r) => r.target.length));
  const lines = results.map((r) => {
    const what = r.error === undefined ? `exit ${r.code}` : r.code === EXIT_UNREACHED ? `not reached (exit ${r.code}): ${r.error}` : `exit ${r.code}: ${r.error}`;
    return `${r.target.padEnd(width)}  ${what}`;
  });
  const failed = results.filter((r) => r.code !== 0);
  const unreached = results.filter((r) => r.code === EXIT_UNREACHED && r.error !== undefined).length;
  const exitCode = failed.reduce((m, r) => Math.max(m, r.code), 0);
  const counts = [`${results.length - failed.length} succeeded`, `${failed.length - unreached} failed`, ...(unreached ? [`${unreached} not reached`] : [])];
  lines.push(`${results.length} target${results.length === 1 ? '' : 's'}: ${counts.join(', ')}; exit ${exitCode}`);
  return { lines, exitCode };
}
