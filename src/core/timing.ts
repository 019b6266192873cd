// CRASHCART_TIMING=1: where an attach spends its time, as one line on stderr when it ends:
//   crashcart: timing (ms): load 31.2, lookup 1.4, image 0.3, graft 4.1, spawn 1.2, wait 3.0, ungraft 2.2, total 43.4; peak rss 41.2 MiB
// `load` is from the process's start to the CLI's first line (Node's own start and loading
// crashcart's modules); the other phases are laps of one session. Off, a stopwatch is a
// shared object whose methods do nothing, so it costs nothing.

/** Milliseconds on a monotonic clock (the global `performance` loads perf_hooks on first use). */
export const now = (): number => Number(process.hrtime.bigint()) / 1e6;

export type Phase = 'lookup' | 'image' | 'graft' | 'spawn' | 'wait' | 'ungraft';

const PHASES: Phase[] = ['lookup', 'image', 'graft', 'spawn', 'wait', 'ungraft'];

export interface Stopwatch {
  readonly on: boolean;
  /** time since the last lap (or the stopwatch's start) goes to `phase` */
  lap(phase: Phase): void;
  /** the figures so far, or undefined when off */
  line(): string | undefined;
}

let codeCache: string | undefined;
/** What bin/crashcart did with V8's code cache of the bundle (used, written, rejected, none, off), for the line. */
export function noteCodeCache(status: string | undefined): void {
  codeCache = status;
}

const OFF: Stopwatch = { on: false, lap() {}, line: () => undefined };

export const timingOn = (env: NodeJS.ProcessEnv = process.env) => env.CRASHCART_TIMING === '1';

/** A stopwatch that starts now; `load` says how long the process took to get here. */
export function stopwatch(opts: { load?: number; on?: boolean } = {}): Stopwatch {
  if (!(opts.on ?? timingOn())) return OFF;
  const spent = new Map<Phase, number>();
  const t0 = now();
  let last = t0;
  return {
    on: true,
    lap(phase) {
      const t = now();
      spent.set(phase, (spent.get(phase) ?? 0) + t - last);
      last = t;
    },
    line() {
      const ms = (n: number) => n.toFixed(1);
      const parts = PHASES.filter((p) => spent.has(p)).map((p) => `${p} ${ms(spent.get(p)!)}`);
      const load = opts.load === undefined ? [] : [`load ${ms(opts.load)}`];
      const total = (opts.load ?? 0) + last - t0;
      const rss = process.resourceUsage().maxRSS / 1024;
      return `timing (ms): ${[...load, ...parts, `total ${ms(total)}`].join(', ')}; peak rss ${rss.toFixed(1)} MiB${codeCache ? `; code cache ${codeCache}` : ''}`;
    },
  };
}
