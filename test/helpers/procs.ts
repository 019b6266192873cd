// The host's processes as the tests look at them: each with its parent, process group and
// terminal's foreground group, the tree below one process, and those that name a directory.
import { readdirSync, readFileSync } from 'node:fs';
import { isRunning } from '../../src/core/proc.js';
import { until } from './wait.js';

export interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  /** the foreground process group of its controlling terminal (-1 without one) */
  tpgid: number;
  /** state letter: R, S, Z... */
  state: string;
  /** start time in clock ticks: with the pid it names the process even after the pid is reused */
  start: number;
  comm: string;
}

/** One process from /proc/PID/stat, or undefined when it is gone. */
export function readProc(pid: number): Proc | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm may hold spaces and parentheses: the fields resume after the last ')'
  const close = stat.lastIndexOf(')');
  const f = stat.slice(close + 2).split(' ');
  return {
    pid,
    state: f[0]!,
    ppid: Number(f[1]),
    pgrp: Number(f[2]),
    tpgid: Number(f[5]),
    start: Number(f[19]),
    comm: stat.slice(stat.indexOf('(') + 1, close),
  };
}

export function processes(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = readProc(Number(name));
    if (p) out.push(p); // else gone meanwhile
  }
  return out;
}

/** Every process below pid (children, their children...). */
export function descendants(pid: number): Proc[] {
  const all = processes();
  const out: Proc[] = [];
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    for (const c of all.filter((x) => x.ppid === p)) {
      out.push(c);
      queue.push(c.pid);
    }
  }
  return out;
}

/** Still the same process, zombie or not. */
export const exists = (p: Proc): boolean => readProc(p.pid)?.start === p.start;

/** Its argv ([] when it is gone or a kernel thread). */
export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return [];
  }
}

/** Live processes whose command line mentions `needle` (a daemon's directory). */
export async function processesMentioning(needle: string): Promise<{ pid: number; cmd: string }[]> {
  const out: { pid: number; cmd: string }[] = [];
  for (const p of processes()) {
    const cmd = cmdline(p.pid).join(' ');
    if (cmd.includes(needle) && p.pid !== process.pid && isRunning(p.pid)) out.push({ pid: p.pid, cmd });
  }
  return out;
}

/** Waits up to `ms` for the process to end (a zombie counts as ended); says whether it did. */
export const waitGone = (pid: number, ms: number): Promise<boolean> => until(() => !isRunning(pid), { ms });
