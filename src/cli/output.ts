// What crashcart says on stderr. stdout belongs to the command in the target (and to
// listings), so scripts get clean output.
import { CrashcartError, EXIT_CRASHCART } from '../core/errors.js';
import { isatty, type NativeError } from '../native/index.js';

export type Log = (line: string) => void;

export function logger(verbose: boolean): Log {
  return verbose ? (line) => process.stderr.write(`crashcart: ${line}\n`) : () => {};
}

/** Warnings: shown always, one line each. */
export const warn: Log = (line) => process.stderr.write(`crashcart: warning: ${line}\n`);

/** Progress lines for long steps: shown on a terminal or with -v, quiet in scripts. */
export function progress(verbose: boolean): Log {
  // asked when there is a line to show: process.stderr.isTTY alone opens stderr as a stream
  return (line) => {
    if (verbose || isatty(2)) process.stderr.write(`crashcart: ${line}\n`);
  };
}

/** Rows as text: columns padded to their widest cell and two spaces apart, as `docker ps`. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => `${r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')}\n`).join('');
}

/** What -v adds to a failure: each cause, with the native side's step and detail. */
export function causeChain(e: unknown): string[] {
  const out: string[] = [];
  for (let c = (e as Error | undefined)?.cause, depth = 0; c !== undefined && depth < 8; c = (c as Error).cause, depth++) {
    const x = c as Partial<NativeError> & { step?: string; detail?: number; signal?: number };
    const facts = [
      x.code && `code ${x.code}`,
      x.syscall && `syscall ${x.syscall}`,
      x.path && `path ${x.path}`,
      x.step && x.step !== x.syscall && `step ${x.step}`,
      typeof x.detail === 'number' && x.detail !== 0 && `detail ${x.detail}`,
      typeof x.signal === 'number' && `signal ${x.signal}`,
    ].filter(Boolean);
    out.push(`caused by: ${c instanceof Error ? c.message : String(c)}${facts.length ? ` [${facts.join(', ')}]` : ''}`);
  }
  return out;
}

/**
 * Prints one line for a failure (and with -v its causes) and returns the exit code to use.
 * Everything a user can cause is a CrashcartError; anything else is a bug in crashcart: one
 * line that says so, and with -v the stack.
 */
export function report(e: unknown, verbose = false): number {
  if (e instanceof CrashcartError) {
    process.stderr.write(`crashcart: ${e.message}${e.hint ? `; ${e.hint}` : ''}\n`);
    if (verbose) for (const line of causeChain(e)) process.stderr.write(`crashcart:   ${line}\n`);
    return e.exitCode;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  const code = (err as Partial<NativeError>).code;
  process.stderr.write(`crashcart: internal error: ${err.message.split('\n')[0]}${code ? ` (${code})` : ''}; this is a bug in crashcart: run it again with -v and report what it prints\n`);
  if (verbose) {
    for (const line of (err.stack ?? '').split('\n').slice(1)) process.stderr.write(`crashcart:   ${line.trim()}\n`);
    for (const line of causeChain(err)) process.stderr.write(`crashcart:   ${line}\n`);
  }
  return EXIT_CRASHCART;
}

export function requireRoot(what: string, why = 'it attaches loop devices and enters namespaces'): void {
  if (process.geteuid?.() !== 0) {
    throw new CrashcartError(`${what} needs root (${why})`, {
      hint: 'run it with sudo',
    });
  }
}
