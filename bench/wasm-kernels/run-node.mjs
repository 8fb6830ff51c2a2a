// node --no-liftoff run-node.mjs KERNEL.wasm ITERATIONS -> prints {"checksum":N,"best_ms":M,"first_ms":F}
import { readFile } from 'node:fs/promises';
const [file, iterations = '5'] = process.argv.slice(2);
const { instance } = await WebAssembly.instantiate(await readFile(file), {});
const run = instance.exports.run;
let best = Infinity, first = 0, checksum = 0;
// One warm-up call (i === 0, reported as first_ms) and then ITERATIONS measured ones, as the engine side does.
for (let i = 0; i <= Number(iterations); i++) {
  const t0 = performance.now();
  checksum = run() >>> 0;
  const ms = performance.now() - t0;
  if (i === 0) first = ms;
  else best = Math.min(best, ms);
}
console.log(JSON.stringify({ checksum, best_ms: best, first_ms: first }));
