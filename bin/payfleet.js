#!/usr/bin/env node
// The `payfleet` command. Three layouts:
//   - the container image: dist/ only, no sources -> run dist/;
//   - a checkout whose dist/ is up to date (`npm run build`, run by `npm install` / `npm ci` as
//     `prepare`) -> run dist/: plain JavaScript starts several times faster than tsx;
//   - a checkout where any source is newer than its compiled file, or has none (you edited a .ts
//     file, switched branch, never built) -> run the sources through tsx. Stale compiled code never
//     runs silently: "up to date" is checked on every start (a few hundred stat calls, ~3 ms).
// PAYFLEET_FROM_SOURCE=1 forces the sources (tsx). See docs/performance.md, "CLI start-up".
import { existsSync, readdirSync, statSync } from 'node:fs';
import { refuseOldNode } from './node-floor.js';

refuseOldNode('payfleet');

const root = new URL('../', import.meta.url);
const source = new URL('cli/main.ts', root);
const compiled = new URL('dist/cli/main.js', root);

// `payfleet start` loads the reference Ledger consumer from test/ (TypeScript, not compiled into
// dist/), so the demo always runs from the sources; the workers it starts still use dist/.
const SOURCE_ONLY = new Set(['start']);

/** The first source (under shared/, workers/ and cli/, what tsconfig.build.json compiles) newer than its dist/ file. */
function staleSource() {
  const walk = (dir) => {
    if (!existsSync(new URL(dir, root))) return undefined;
    for (const entry of readdirSync(new URL(dir, root), { withFileTypes: true })) {
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory()) {
        const found = walk(`${path}/`);
        if (found) return found;
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) {
        const js = new URL(`dist/${path.slice(0, -3)}.js`, root);
        const built = statSync(js, { throwIfNoEntry: false });
        if (!built || built.mtimeMs < statSync(new URL(path, root)).mtimeMs) return path;
      }
    }
    return undefined;
  };
  return walk('shared/') ?? walk('workers/') ?? walk('cli/');
}

async function fromSource(reason) {
  if (reason && process.stderr.isTTY) {
    process.stderr.write(`payfleet: ${reason}; running the sources through tsx (slower; \`npm run build\` makes it fast again)\n`);
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
}

const command = process.argv.slice(2).find((a) => !a.startsWith('-'));

if (!existsSync(source)) {
  if (existsSync(compiled)) await import(compiled.href);
  else {
    process.stderr.write('payfleet: neither cli/main.ts nor dist/cli/main.js exists; run `npm run build`\n');
    process.exit(2);
  }
} else if (process.env.PAYFLEET_FROM_SOURCE === '1' || SOURCE_ONLY.has(command)) {
  await fromSource();
} else if (!existsSync(compiled)) {
  await fromSource();
} else {
  const stale = staleSource();
  if (stale) await fromSource(`${stale} changed since the last build`);
  else await import(compiled.href);
}
