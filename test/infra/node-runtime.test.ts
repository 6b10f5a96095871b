/**
 * The Node.js payfleet runs on, end to end (docs: README "Requirements"):
 *   - package.json `engines.node` is the real floor: the highest floor among the production
 *     dependencies the lockfile installs;
 *   - the Node that `npm install` puts in node_modules/.bin (one per-platform optional dependency,
 *     pinned), .nvmrc and the image's base are the same major, and this suite runs on exactly it;
 *   - when npm 10 drops that `node` link (npm/cli#4362), the postinstall puts it back;
 *   - below the floor, `payfleet` refuses with one line instead of failing deep in an import;
 *   - a worker started as on ECS prints no AWS SDK Node-version warning, with nothing silencing it.
 */
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, startProcess } from '../support/processes.js';
import { setupTestStack, type TestStack } from '../support/stack.js';

type Version = readonly [number, number, number];

interface LockEntry {
  readonly version?: string;
  readonly dev?: boolean;
  readonly optional?: boolean;
  readonly os?: readonly string[] | string;
  readonly cpu?: readonly string[] | string;
  readonly bin?: Record<string, string>;
  readonly hasInstallScript?: boolean;
  readonly engines?: { readonly node?: string } | readonly string[];
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
  optionalDependencies: Record<string, string>;
};
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };

const parse = (v: string): Version => {
  const [a = 0, b = 0, c = 0] = v.replace(/^v/, '').split('.').map((n) => (/^\d+$/.test(n) ? Number(n) : 0));
  return [a, b, c];
};
const cmp = (a: Version, b: Version) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
const text = (v: Version) => v.join('.');

/**
 * The lowest Node version an `engines.node` range admits: the smallest over its `||` alternatives,
 * each alternative's the largest of its lower bounds (`>=X`, `^X`, `~X`, `X`, `X.x`, `*`). A form
 * this does not know fails the test rather than being guessed.
 */
function lowestAdmitted(range: string): Version {
  const alternatives = range.split('||').map((alternative) => {
    const comparators = alternative
      .trim()
      .replace(/([<>]=?)\s+/g, '$1')
      .split(/\s+/)
      .filter(Boolean);
    let low: Version = [0, 0, 0];
    for (const c of comparators) {
      if (c.startsWith('<')) continue; // upper bounds do not raise the floor
      const m = /^(?:>=|\^|~|=)?v?(\d+|\*)(?:\.(\d+|x|\*))?(?:\.(\d+|x|\*))?$/.exec(c);
      if (!m) throw new Error(`engines range "${range}": comparator "${c}" not understood`);
      const bound = parse([m[1], m[2], m[3]].map((n) => (n && /^\d+$/.test(n) ? n : '0')).join('.'));
      if (cmp(bound, low) > 0) low = bound;
    }
    return low;
  });
  return alternatives.reduce((a, b) => (cmp(a, b) <= 0 ? a : b));
}

const binaries = Object.entries(pkg.optionalDependencies);
const bundledVersion = binaries[0]?.[1] ?? '';
const nvmrc = readFileSync(join(ROOT, '.nvmrc'), 'utf8').trim();
const imageMajor = /^ARG NODE_IMAGE=node:(\d+)-/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];

describe('Node.js runtime', () => {
  it('engines.node is the highest floor among the production dependencies in the lockfile', () => {
    let floor: Version = [0, 0, 0];
    const setBy: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      // The root is what is being checked; dev dependencies do not run in production; optional ones
      // (Node binaries, TypeScript's native compiler) declare none.
      if (path === '' || entry.dev || entry.optional) continue;
      const range = Array.isArray(entry.engines) ? undefined : (entry.engines as { node?: string } | undefined)?.node;
      if (!range) continue;
      const low = lowestAdmitted(range);
      const order = cmp(low, floor);
      if (order > 0) setBy.length = 0;
      if (order >= 0) {
        floor = low;
        setBy.push(`${path.replace(/^.*node_modules\//, '')}@${entry.version} (${range})`);
      }
    }
    expect(pkg.engines.node, `set by ${setBy.join(', ')}`).toBe(`>=${text(floor)}`);
    expect(lock.packages['']?.engines).toEqual(pkg.engines);
  });

  it('npm install brings exactly one pinned Node per platform, without an install script', () => {
    // One version for every platform, exact (the lockfile pins what it resolves to).
    expect(bundledVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(new Set(binaries.map(([, v]) => v))).toEqual(new Set([bundledVersion]));
    const platforms: string[] = [];
    for (const [name] of binaries) {
      const entry = lock.packages[`node_modules/${name}`];
      expect(entry, name).toBeDefined();
      expect(entry!.version, name).toBe(bundledVersion);
      expect(entry!.optional, name).toBe(true);
      expect(entry!.hasInstallScript, name).toBeUndefined();
      expect(Object.keys(entry!.bin ?? {}), name).toEqual(['node']);
      const os = [entry!.os ?? []].flat();
      const cpu = [entry!.cpu ?? []].flat();
      expect([os.length, cpu.length], name).toEqual([1, 1]);
      platforms.push(`${os[0]}-${cpu[0]}`);
    }
    // No two packages for one platform: npm would link two `node` bins over each other.
    expect(platforms.sort()).toEqual(['darwin-arm64', 'darwin-x64', 'linux-arm64', 'linux-x64', 'win32-x64']);
  });

  it('.nvmrc, the bundled Node and the image base are one major, above the floor; this suite runs on it', () => {
    const major = parse(bundledVersion)[0];
    expect(nvmrc).toBe(String(major));
    expect(imageMajor).toBe(String(major));
    expect(cmp(parse(bundledVersion), lowestAdmitted(pkg.engines.node))).toBeGreaterThanOrEqual(0);
    // npm test runs vitest on node_modules/.bin/node, and the test forks inherit its executable.
    if (existsSync(join(ROOT, 'node_modules', '.bin', 'node'))) expect(process.version).toBe(`v${bundledVersion}`);
    else expect(parse(process.version)[0]).toBe(major); // a platform npm has no binary for: the user's own Node
  });
});

describe('postinstall (bin/link-node.js)', () => {
  const installed = binaries.map(([name]) => name).find((name) => existsSync(join(ROOT, 'node_modules', name, 'package.json')));

  it.skipIf(!installed || process.platform === 'win32')('links node_modules/.bin/node to this platform\'s Node when npm left none, and then leaves it alone', async () => {
    // A layout as npm 10 leaves it: the platform's package installed, no .bin/node.
    const dir = mkdtempSync(join(tmpdir(), 'payfleet-link-node-'));
    try {
      mkdirSync(join(dir, 'bin'));
      mkdirSync(join(dir, 'node_modules', '.bin'), { recursive: true });
      cpSync(join(ROOT, 'bin', 'link-node.js'), join(dir, 'bin', 'link-node.js'));
      cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
      symlinkSync(join(ROOT, 'node_modules', installed!), join(dir, 'node_modules', installed!), 'dir');
      const run = async () => {
        const p = startProcess(join(dir, 'bin', 'link-node.js'), [], {});
        expect(await p.exited, p.raw()).toBe(0);
        return p.raw();
      };
      const first = await run();
      const link = join(dir, 'node_modules', '.bin', 'node');
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link)).toBe(`../${installed}/bin/node`);
      expect(first).toBe(`payfleet postinstall: linked node_modules/.bin/node to ${installed} ${bundledVersion} (npm left none)\n`);
      expect(await run()).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('payfleet on a Node below the floor', () => {
  /** `payfleet --version` with `process.version` replaced before bin/payfleet.js runs. */
  async function versionAs(version: string) {
    const p = startProcess('bin/payfleet.js', ['--version'], {
      NODE_OPTIONS: `--import=data:text/javascript,Object.defineProperty(process,'version',{value:'${version}'})`,
    });
    const code = await p.exited;
    return { code, out: p.raw() };
  }

  it('refuses with exit 2 and one line naming the floor, the Node it found and what to run instead', async () => {
    const floor = pkg.engines.node.replace('>=', '');
    const [major, minor, patch] = parse(floor);
    for (const old of ['v20.20.2', `v${major}.${minor}.${patch - 1}`]) {
      const r = await versionAs(old);
      expect(r.code, r.out).toBe(2);
      expect(r.out.trimEnd().split('\n'), r.out).toHaveLength(1);
      expect(r.out).toContain(`payfleet: needs Node.js >= ${floor} (package.json "engines"), this is ${old} (${process.execPath});`);
      expect(r.out).toContain('`npm start`');
    }
    const atFloor = await versionAs(`v${floor}`);
    expect(atFloor.code, atFloor.out).toBe(0);
    expect(atFloor.out).toMatch(new RegExp(`^payfleet \\S+ \\(node v${floor.replaceAll('.', '\\.')}\\)\\n$`));
  });
});

describe('the AWS SDK Node-version warning', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await setupTestStack('nodewarn');
  });
  afterAll(() => stack?.close());

  it('is not printed by a worker started as on ECS, and nothing silences it', async () => {
    // Neither the test run nor the worker's environment carries the SDK's opt-out or NODE_NO_WARNINGS.
    expect(process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED).toBeUndefined();
    expect(process.env.NODE_NO_WARNINGS).toBeUndefined();
    const p = startProcess('bin/payfleet.js', ['worker', 'ledger'], {
      ...stack.env,
      PAYFLEET_OPS_PORT: '0',
      PAYFLEET_WAIT_TIME_SEC: '1',
    });
    try {
      // Started means its SDK clients were built and have called SQS and DynamoDB (bootstrap check,
      // shard leases): the SDK decides about its warning when a client is built.
      await p.waitForLine((l) => l.msg === 'worker started', 60_000);
    } finally {
      p.kill('SIGTERM');
    }
    expect(await p.exited).toBe(0);
    expect(p.raw()).not.toMatch(/NodeVersionSupportWarning|AWS SDK for JavaScript \(v3\)[\s\S]*require node/);
  });
});
