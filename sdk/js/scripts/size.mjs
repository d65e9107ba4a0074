// The bundle's size as a page ships it: dist/index.js bundled and minified
// by esbuild (ESM, for browsers), then gzipped. Prints it, and fails when
// over the budget (5 kB) so that growth is seen.
import { gzipSync } from 'node:zlib';

import { build } from 'esbuild';

const BUDGET = 5 * 1024;
const result = await build({
  entryPoints: ['dist/index.js'],
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  write: false,
});
const code = result.outputFiles[0].contents;
const gzipped = gzipSync(code, { level: 9 }).length;
console.log(`bundle: ${code.length} bytes minified, ${gzipped} bytes minified+gzipped (budget ${BUDGET})`);
if (gzipped > BUDGET) {
  console.error(`over the budget of ${BUDGET} bytes`);
  process.exit(1);
}
