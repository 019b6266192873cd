// Is a program installed on this host? (PATH as the caller has it.)
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** An executable file `name` in one of PATH's directories (or at `name`, if it has a slash). */
export function onPath(name: string): boolean {
  if (name.includes('/')) return isExecutable(name);
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && isExecutable(join(dir, name)));
}
