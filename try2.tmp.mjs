import { startTarget } from '/work/wt-matrix/dist/test/helpers/targets.js';
import { runCrashcart } from '/work/wt-matrix/dist/test/helpers/cli.js';
const kind = process.argv[2];
const t = await startTarget(kind, { plant: kind === 'musl' });
try {
  for (const cmd of process.argv.slice(3)) {
    const r = await runCrashcart(['-i', '/tmp/mx/full.img', t.container.id, '--', 'bash', '-c', cmd]);
    console.log(`--- ${cmd} => ${r.code}\n${r.stdout}\n${r.stderr}`);
  }
} finally { await t.container.remove(); }
