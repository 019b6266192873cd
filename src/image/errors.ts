// The image area's errors are crashcart's own (core/errors.ts): a one-line message, a hint
// that says what to do, and a code that callers and tests check ('ENOIMAGE', 'EBADIMAGE',
// 'EUNSAFEIMAGE', 'EBUILD', 'EPULL', ...).
import { CrashcartError } from '../core/errors.js';

export function imageError(code: string, message: string, opts: { hint?: string; cause?: unknown } = {}): CrashcartError {
  return new CrashcartError(message, { code, ...opts });
}

/**
 * The line of a failed command's output that says what went wrong: apt's "E:" line, else the
 * first line on stderr (later lines are usually consequences), for one-line messages.
 */
export function causeLine(err: unknown): string {
  const e = err as { stderr?: unknown; stdout?: unknown; shortMessage?: unknown; message?: unknown };
  for (const text of [e.stderr, e.stdout]) {
    if (typeof text !== 'string') continue;
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
    const apt = lines.find((l) => l.startsWith('E: '));
    if (apt) return apt.slice(3);
    if (lines.length) return lines[0]!;
  }
  return String(e.shortMessage ?? e.message ?? err);
}
