// The oldest Node.js payfleet runs on, and a one-line refusal below it. Shared by bin/payfleet.js
// and vitest.config.ts; plain JavaScript that parses on any Node, so an old one gets the line
// rather than a failure deep in an import (fauxqs imports node:sqlite, for one).
import { existsSync, readFileSync } from 'node:fs';

const root = new URL('../', import.meta.url);

/**
 * package.json's `engines.node` (`>=X.Y.Z`): the highest floor among payfleet's dependencies
 * (test/infra/node-runtime.test.ts recomputes it from the lockfile). Undefined when package.json
 * states none (a stripped-down layout); any other form is a mistake and throws.
 */
export function nodeFloor() {
  const range = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).engines?.node;
  if (range === undefined) return undefined;
  const m = /^>=\s*(\d+)\.(\d+)\.(\d+)$/.exec(range);
  if (!m) throw new Error(`package.json engines.node is "${range}"; expected ">=X.Y.Z"`);
  return m.slice(1).map(Number);
}

/** True when `version` (`v20.20.2` or `20.20.2`) is at least `floor`. */
export function meetsFloor(version, floor) {
  const have = version.replace(/^v/, '').split('.').map(Number);
  const i = floor.findIndex((n, k) => n !== have[k]);
  return i < 0 || have[i] > floor[i];
}

/**
 * Exit 2 with one line on stderr when this Node is older than the floor. `npm start`, `npm test`
 * and `npx payfleet` never get here on an old system Node: `npm install` puts Node 26 in
 * node_modules/.bin (a per-platform optional dependency) and npm puts that directory first on PATH.
 * This catches `node bin/payfleet.js` run by hand with the system's node, and platforms npm has no
 * Node binary for.
 */
export function refuseOldNode(what) {
  const floor = nodeFloor();
  if (!floor || meetsFloor(process.version, floor)) return;
  const bundled = ['node', 'node.exe', 'node.cmd'].some((f) => existsSync(new URL(`node_modules/.bin/${f}`, root)));
  const fix = bundled
    ? 'run it through npm (`npm start`, `npm test`, `npx payfleet ...`), which puts the Node in node_modules/.bin first on PATH'
    : 'install the Node that .nvmrc names (`npm install` brings one only on Linux and macOS x64/arm64 and Windows x64)';
  process.stderr.write(`${what}: needs Node.js >= ${floor.join('.')} (package.json "engines"), this is ${process.version} (${process.execPath}); ${fix}\n`);
  process.exit(2);
}
