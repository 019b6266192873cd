// One error shape for the image area: a one-line message plus a code the CLI maps to an
// exit status and a hint.

export interface ImageError extends Error {
  code: string; // 'ENOIMAGE', 'EBADIMAGE', 'EBUILD'
}

export function imageError(code: string, message: string, cause?: unknown): ImageError {
  const err = new Error(message, cause === undefined ? undefined : { cause }) as ImageError;
  err.code = code;
  return err;
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
