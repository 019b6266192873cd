// crashcart gc [--dry-run]: take the toolkit out of every target whose sessions all ended
// (crashed, killed, or a host that lost power mid-session) and forget targets that are gone.
// Every attach does the same for what it meets; gc does it for the whole host at once.
import { writeAudit } from '../../core/audit.js';
import { describeTarget, collectGarbage, type GcAction } from '../../core/grafts.js';
import { StateStore } from '../../core/state.js';
import { logger, requireRoot, warn } from '../output.js';

export interface GcArgs {
  'dry-run': boolean;
  verbose: boolean;
  audit: boolean;
}

const WORDS: Record<GcAction['action'], [string, string]> = {
  unmounted: ['removed the toolkit from', 'would remove the toolkit from'],
  detached: ['detached the toolkit from', 'would remove the toolkit from'],
  swept: ['removed what an interrupted graft left in', 'would remove what an interrupted graft left in'],
  cleared: ['forgot an interrupted session in', 'would clean up after an interrupted session in'],
  forgotten: ['forgot', 'would forget'],
  kept: ['kept', 'would keep'],
  failed: ['could not clean up', 'could not clean up'],
};

/** One line per action, as gc prints it. */
export function gcLine(a: GcAction, dryRun: boolean): string {
  const what = `${describeTarget(a.target)} (pid ${a.target.pid})`;
  const why = a.action === 'forgotten' ? ': it is gone'
    : a.action === 'cleared' && !dryRun ? ': it left nothing in the container'
      : a.action === 'detached' ? ': a leftover process still uses it, so it goes when that process exits'
        : a.action === 'failed' ? `: ${a.message}` : ': no session uses it any more';
  return `${WORDS[a.action][dryRun ? 1 : 0]} ${what}${why}`;
}

export async function gc(args: GcArgs): Promise<number> {
  requireRoot('crashcart gc', 'it unmounts toolkits inside containers');
  const actions = await collectGarbage(new StateStore(), { dryRun: args['dry-run'], log: logger(args.verbose) });
  for (const a of actions) {
    if (a.action === 'failed') warn(gcLine(a, args['dry-run']));
    else process.stdout.write(`${gcLine(a, args['dry-run'])}\n`);
  }
  if (actions.length === 0) process.stdout.write('nothing to clean up\n');
  if (!args['dry-run']) {
    const why = writeAudit(args.audit ? { event: 'gc', removed: actions.map((a) => gcLine(a, false)), exitCode: 0 } : { event: 'gc', noAudit: true });
    if (why) warn(why);
  }
  return actions.some((a) => a.action === 'failed') ? 125 : 0;
}
