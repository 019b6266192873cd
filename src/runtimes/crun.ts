import { ociStateRuntime, readCrunState } from './oci-state.js';
import type { Runtime } from './types.js';

/** crun's state root: /run/crun, or CRASHCART_CRUN_ROOT (like crun --root). */
export const crunRoot = () => process.env.CRASHCART_CRUN_ROOT ?? '/run/crun';

export const crun = {
  ...ociStateRuntime('crun', crunRoot, readCrunState, 'exec.fifo'),
  describeStopped: async (c) => (await import('./oci-stopped.js')).describeOci('crun', crunRoot(), c),
} satisfies Runtime;
