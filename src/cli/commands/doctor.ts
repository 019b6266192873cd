// crashcart doctor [--json]: can crashcart attach on this host, and if not, what to fix.
// Loaded only when asked for (the probes pull in more than an attach needs).
import { doctorExitCode, type CheckResult } from '../../doctor/checks.js';
import { runChecks } from '../../doctor/probes.js';
import { formatTable, requireRoot } from '../output.js';

export interface DoctorArgs {
  json: boolean;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The last line: the answer to "can I attach here?". */
export function doctorSummary(results: CheckResult[]): string {
  const failed = results.filter((r) => r.status === 'fail').map((r) => r.check);
  const warned = results.filter((r) => r.status === 'warn').map((r) => r.check);
  if (failed.length) return `crashcart cannot attach on this host: ${plural(failed.length, 'check')} failed (${failed.join(', ')})`;
  return `crashcart can attach on this host${warned.length ? ` (${plural(warned.length, 'warning')}: ${warned.join(', ')})` : ''}`;
}

/** One row per check, a `fix:` line under each warn and fail, and the summary. */
export function doctorTable(results: CheckResult[]): string {
  const rows = [['CHECK', 'STATUS', 'DETAIL']];
  for (const r of results) {
    rows.push([r.check, r.status, r.detail]);
    if (r.status !== 'ok' && r.fix) rows.push(['', '', `fix: ${r.fix}`]);
  }
  return `${formatTable(rows)}\n${doctorSummary(results)}\n`;
}

export async function doctor(args: DoctorArgs): Promise<number> {
  requireRoot('crashcart doctor', "it opens the loop devices, tries the mount API and reads the runtimes' state");
  const results = await runChecks();
  process.stdout.write(args.json ? `${JSON.stringify(results, null, 2)}\n` : doctorTable(results));
  return doctorExitCode(results);
}
