import { ociStateRuntime, readCrunState } from './oci-state.js';

/** crun's state root: /run/crun, or CRASHCART_CRUN_ROOT (like crun --root). */
export const crunRoot = () => process.env.CRASHCART_CRUN_ROOT ?? '/run/crun';

export const crun = ociStateRuntime('crun', crunRoot, readCrunState, 'exec.fifo');
