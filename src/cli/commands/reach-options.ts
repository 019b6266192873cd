// The options of `crashcart forward` and `crashcart cp`, apart from the commands themselves:
// main.ts declares them on every run, and loads the commands only when they are used.
import type { Argv } from 'yargs';

export interface ForwardArgs {
  target: string;
  ports: string[];
  address: string[];
  runtime?: string;
  namespace?: string;
  audit: boolean;
  verbose: boolean;
}

export function forwardOptions<T>(y: Argv<T>) {
  return y
    .positional('target', { type: 'string', describe: 'container ID, unique ID prefix, name, or PID' })
    .positional('ports', { type: 'string', array: true, describe: '[LOCAL:]PORT, LOCAL:HOST:PORT, LOCAL:/unix/socket/path or LOCAL:@abstract (LOCAL 0: a free port)' })
    .option('address', { type: 'string', array: true, requiresArg: true, default: ['127.0.0.1'], describe: 'host addresses to listen on (repeatable or comma-separated; localhost is 127.0.0.1)' })
    .option('runtime', { requiresArg: true, alias: 'r', type: 'string', describe: 'look the target up in this runtime only' })
    .option('namespace', { requiresArg: true, type: 'string', describe: 'look in this containerd namespace only' })
    .option('audit', { type: 'boolean', default: true, describe: 'record the forwarding in the audit log' });
}

export interface CpArgs {
  source: string;
  destination: string;
  archive: boolean;
  runtime?: string;
  namespace?: string;
  audit: boolean;
  verbose: boolean;
}

export function cpOptions<T>(y: Argv<T>) {
  return y
    .positional('source', { type: 'string', describe: "TARGET:PATH, a host path, or '-' (a tar stream on stdin, into TARGET:DIR)" })
    .positional('destination', { type: 'string', describe: "TARGET:PATH, a host path, or '-' (a tar stream of TARGET:PATH on stdout)" })
    .option('archive', { alias: 'a', type: 'boolean', default: false, describe: 'keep owner (numeric, as the container sees it), all mode bits and times' })
    .option('runtime', { requiresArg: true, alias: 'r', type: 'string', describe: 'look the target up in this runtime only' })
    .option('namespace', { requiresArg: true, type: 'string', describe: 'look in this containerd namespace only' })
    .option('audit', { type: 'boolean', default: true, describe: 'record the copy in the audit log' });
}
