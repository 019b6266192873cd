import { ociStateRuntime, readRuncState } from './oci-state.js';
import type { Runtime } from './types.js';

/** runc's state root: /run/runc, or CRASHCART_RUNC_ROOT (like runc --root). */
export const runcRoot = () => process.env.CRASHCART_RUNC_ROOT ?? '/run/runc';

// A container made by `runc create` but not started keeps its exec.fifo.
export const runc = {
  ...ociStateRuntime('runc', runcRoot, readRuncState, 'exec.fifo'),
  describeStopped: async (c) => (await import('./oci-stopped.js')).describeOci('runc', runcRoot(), c),
} satisfies Runtime;
