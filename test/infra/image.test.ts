import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './schemas.js';

/**
 * No Docker engine here: the image is checked by what can be checked without one — the Dockerfile's
 * shape, the build context it gets, that production dependencies cover every runtime import, and
 * that the compiled layout the runtime stage assembles (dist/ + bin/, no sources) starts.
 */

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
/** Instructions, with line continuations joined and comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const stages = instructions.reduce<string[][]>((acc, line) => {
  if (line.startsWith('FROM ')) acc.push([]);
  acc.at(-1)?.push(line);
  return acc;
}, []);
const runtime = stages.at(-1) ?? [];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') && !path.endsWith('.test.ts') ? [path] : [];
  });
}

describe('Dockerfile', () => {
  it('builds in stages from one Node LTS slim base and runs the compiled output only', () => {
    expect(instructions[0]).toMatch(/^ARG NODE_IMAGE=node:\d+-[a-z]+-slim$/);
    expect(stages.length).toBeGreaterThanOrEqual(3);
    for (const stage of stages) expect(stage[0]).toMatch(/^FROM \$\{NODE_IMAGE\} AS [a-z-]+$/);
    expect(stages[0]!.join('\n')).toMatch(/RUN .*npm ci/);
    expect(stages[0]!.join('\n')).toMatch(/RUN npm run build/);
    // Production dependencies only, without the optional ones: the development Node binary
    // (package.json optionalDependencies) stays out of the image, which has its own Node.
    expect(stages.flat().join('\n')).toMatch(/npm ci --omit=dev --omit=optional/);
    const copies = runtime.filter((l) => l.startsWith('COPY'));
    expect(copies.some((c) => /--from=build \/app\/dist/.test(c))).toBe(true);
    // No sources in the runtime stage: bin/payfleet.js must pick dist/ over tsx.
    expect(copies.some((c) => /\b(shared|workers)\b/.test(c) && !c.includes('--from'))).toBe(false);
  });

  it('runs as a non-root user under an init, with a liveness HEALTHCHECK and `worker auth` by default', () => {
    const user = runtime.filter((l) => l.startsWith('USER '));
    expect(user.at(-1)).toBe('USER node');
    expect(runtime.find((l) => l.startsWith('ENTRYPOINT'))).toBe('ENTRYPOINT ["/usr/bin/tini", "--", "payfleet"]');
    expect(runtime.find((l) => l.startsWith('CMD'))).toBe('CMD ["worker", "auth"]');
    const health = runtime.find((l) => l.startsWith('HEALTHCHECK')) ?? '';
    expect(health).toContain('/health/live');
    expect(health).toContain('PAYFLEET_OPS_PORT');
    expect(health).toMatch(/CMD \["node", "-e"/);
  });

  it('is given only what it builds from (.dockerignore allow-list)', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('*');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    const copied = stages
      .flat()
      .filter((l) => l.startsWith('COPY ') && !l.includes('--from'))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    for (const path of copied) expect(allowed, `COPY ${path}`).toContain(path.replace(/\/$/, ''));
    for (const path of allowed) expect(existsSync(join(ROOT, path)), path).toBe(true);
  });
});

describe('Image contents', () => {
  it('has every package the runtime code imports among the production dependencies', () => {
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; optional?: boolean }>;
    };
    const missing: string[] = [];
    for (const file of [...sourceFiles(join(ROOT, 'shared')), ...sourceFiles(join(ROOT, 'workers')), ...sourceFiles(join(ROOT, 'cli'))]) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*import\s+(?!type\b)[^'"]*?from\s+'([^.'][^']*)'/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        const entry = lock.packages[`node_modules/${pkg}`];
        if (!entry || entry.dev || entry.optional) missing.push(`${pkg} (${relative(ROOT, file)})`);
      }
    }
    expect(missing).toEqual([]);
  });

  describe('the runtime layout (dist/ + bin/, no sources)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'payfleet-image-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('compiles with the build config and starts the CLI from dist/', async () => {
      const run = promisify(execFile);
      await run(
        process.execPath,
        [
          join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
          '-p',
          join(ROOT, 'tsconfig.build.json'),
          '--outDir',
          join(dir, 'dist'),
        ],
        {
          cwd: ROOT,
          timeout: 120_000,
        },
      );
      cpSync(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
      symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
      expect(existsSync(join(dir, 'dist', 'cli', 'main.js'))).toBe(true);
      const { stdout } = await run(process.execPath, [join(dir, 'bin', 'payfleet.js'), '--help'], { cwd: dir, timeout: 60_000 });
      expect(stdout).toMatch(/worker <name>/);
      expect(stdout).toMatch(/bootstrap/);
      // A worker without configuration exits 2 with what to set, before touching any network.
      const bare = await run(process.execPath, [join(dir, 'bin', 'payfleet.js'), 'worker', 'ledger'], {
        cwd: dir,
        timeout: 60_000,
        env: { PATH: process.env.PATH ?? '' },
      }).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? '' }),
      );
      expect(bare.code).toBe(2);
      expect(bare.stderr).toContain('AWS_REGION');
    }, 180_000);
  });
});
