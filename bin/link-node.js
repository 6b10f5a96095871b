// `postinstall`: make sure node_modules/.bin/node is the Node that package.json's
// optionalDependencies brought for this platform, so every npm script runs on it.
//
// npm 11 links it by itself (the package's `bin`). npm 10 (what Node 20 and 22 ship) drops it: it
// deletes the `bin` paths of every optional dependency skipped for another platform, and all five
// are named `node` (npm/cli#4362). This puts the link back; it changes nothing when it is right.
// Plain JavaScript that runs on whatever Node runs npm; no network, no download.
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const modules = new URL('node_modules/', root);
const binDir = new URL('.bin/', modules);

const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
const names = Object.keys(pkg.optionalDependencies ?? {});
const asList = (v) => (v === undefined ? [] : [v].flat());

/** The optional dependency installed for this platform (its os and cpu match), if any. */
const mine = names
  .map((name) => ({ name, dir: new URL(`${name}/`, modules) }))
  .filter(({ dir }) => existsSync(new URL('package.json', dir)))
  .map(({ name, dir }) => ({ name, dir, pkg: JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) }))
  .find((p) => asList(p.pkg.os).includes(process.platform) && asList(p.pkg.cpu).includes(process.arch));

const say = (line) => process.stderr.write(`payfleet postinstall: ${line}\n`);

if (!mine) {
  say(
    `npm has no Node.js for ${process.platform}-${process.arch} among package.json's optionalDependencies; ` +
      `npm scripts run on the system's ${process.version} (payfleet needs ${pkg.engines?.node ?? 'a current Node'}; .nvmrc names the major)`,
  );
} else if (mine.pkg.bin?.node) {
  mkdirSync(binDir, { recursive: true });
  const target = `../${mine.name}/${mine.pkg.bin.node}`;
  if (process.platform === 'win32') {
    // npm's own shims are node.cmd / node.ps1 / node; scripts run through cmd.exe, which finds node.cmd.
    const cmd = new URL('node.cmd', binDir);
    if (!existsSync(cmd)) {
      writeFileSync(cmd, `@"%~dp0\\${target.replaceAll('/', '\\')}" %*\r\n`);
      say(`linked node_modules/.bin/node.cmd to ${mine.name} ${mine.pkg.version}`);
    }
  } else {
    const link = new URL('node', binDir);
    const current = (() => {
      try {
        return lstatSync(link).isSymbolicLink() ? readlinkSync(link) : '(not a link)';
      } catch {
        return undefined;
      }
    })();
    if (current !== target) {
      rmSync(link, { force: true });
      symlinkSync(target, link);
      say(`linked node_modules/.bin/node to ${mine.name} ${mine.pkg.version} (npm left ${current ?? 'none'})`);
    }
  }
}
