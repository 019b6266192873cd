// The capability sets of a process, for --caps target: the command gets the target's own
// bounding, permitted, effective, inheritable and ambient sets and no_new_privs instead of
// crashcart's full root.
import { readFileSync } from 'node:fs';
import { CrashcartError, errnoCode } from './errors.js';
import type { CapsRequest } from '../native/index.js';

/** CapInh, CapPrm, CapEff, CapBnd and CapAmb of /proc/PID/status text (hex, as shown). */
export function parseCaps(status: string): Omit<CapsRequest, 'lastCap' | 'noNewPrivs'> {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status);
    if (!m) throw new CrashcartError(`--caps target: no ${name} line in /proc/PID/status`, { hint: 'this kernel is too old for --caps target (Linux 4.3 or later): use --caps root' });
    return m[1];
  };
  return {
    inheritable: field('CapInh'),
    permitted: field('CapPrm'),
    effective: field('CapEff'),
    bounding: field('CapBnd'),
    ambient: field('CapAmb'),
  };
}

export function targetCaps(pid: number): CapsRequest {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (e) {
    throw new CrashcartError(`--caps target: cannot read /proc/${pid}/status: ${errnoCode(e) ?? (e as Error).message}`, { hint: 'is the process still running?', cause: e });
  }
  const caps = parseCaps(status);
  const lastCap = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
  return { ...caps, lastCap: Number.isInteger(lastCap) ? lastCap : 40, noNewPrivs: true };
}
