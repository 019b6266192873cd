// crashcart's own failures: one line that says what failed, and a hint that says what to do.
// The CLI prints them and exits with `exitCode` (125 unless the command itself could not run).
export const EXIT_CRASHCART = 125; // crashcart failed (docker run uses the same)
export const EXIT_CANNOT_INVOKE = 126; // the command exists but cannot be run
export const EXIT_NOT_FOUND = 127; // the command was not found

export class CrashcartError extends Error {
  readonly hint?: string;
  readonly exitCode: number;
  readonly code?: string;

  constructor(message: string, opts: { hint?: string; exitCode?: number; code?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CrashcartError';
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? EXIT_CRASHCART;
    this.code = opts.code;
  }
}

/** The errno code of a Node or addon error ('ENOENT'), if it has one. */
export function errnoCode(e: unknown): string | undefined {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string'
    ? (e as NodeJS.ErrnoException).code
    : undefined;
}
