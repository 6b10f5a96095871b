/**
 * payfleet_build_info{version,node_version,commit} = 1 on every worker's registry: which build each
 * process runs (a deploy half rolled out shows two), with the commit baked into the image.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildInfo, createMetrics } from '../../shared/ops/metrics.js';
import { ROOT } from '../support/processes.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

describe('Metric: payfleet_build_info', () => {
  it('is 1, labelled with the package version, the Node.js version and the commit, and carries the worker', async () => {
    const metrics = createMetrics('auth', { defaultMetrics: false, build: buildInfo({ PAYFLEET_BUILD_COMMIT: ' 3f2c1a7e ' }) });
    const text = await metrics.registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith('payfleet_build_info{'));
    expect(line).toBeDefined();
    expect(line).toContain(`version="${pkg.version}"`);
    expect(line).toContain(`node_version="${process.version}"`);
    expect(line).toContain('commit="3f2c1a7e"');
    expect(line).toContain('worker="auth"');
    expect(line).toMatch(/\} 1$/);
  });

  it('says `unknown` for the commit outside an image build, and reads PAYFLEET_BUILD_COMMIT by default', () => {
    expect(buildInfo({})).toEqual({ version: pkg.version, nodeVersion: process.version, commit: 'unknown' });
    expect(buildInfo({ PAYFLEET_BUILD_COMMIT: '' }).commit).toBe('unknown');
    const before = process.env.PAYFLEET_BUILD_COMMIT;
    process.env.PAYFLEET_BUILD_COMMIT = 'from-env';
    try {
      expect(buildInfo().commit).toBe('from-env');
    } finally {
      if (before === undefined) delete process.env.PAYFLEET_BUILD_COMMIT;
      else process.env.PAYFLEET_BUILD_COMMIT = before;
    }
  });

  it('gets its commit from the image build: the runtime stage turns --build-arg PAYFLEET_BUILD_COMMIT into the variable', () => {
    const lines = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
      .replace(/\\\n/g, ' ')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const runtime = lines.slice(lines.findLastIndex((l) => l.startsWith('FROM ')));
    expect(runtime).toContain('ARG PAYFLEET_BUILD_COMMIT=unknown');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Dockerfile syntax, not a JS template
    expect(runtime.find((l) => l.startsWith('ENV '))).toContain('PAYFLEET_BUILD_COMMIT=${PAYFLEET_BUILD_COMMIT}');
  });
});
