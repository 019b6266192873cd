// Where the toolkit lives inside a container, and what its relocated programs load.
export const PREFIX = '/dev/crashcart';
export const INTERP = `${PREFIX}/lib/ld-linux-x86-64.so.2`;
export const RPATH = `${PREFIX}/lib`;
