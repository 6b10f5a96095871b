/**
 * `npm run synth`: synthesise the CloudFormation template into cdk.out/ offline, with the CDK
 * library alone (no CDK CLI, no Docker, no AWS credentials).
 *
 *   node --import tsx infra/synth.ts [-c key=value ...] [--outdir dir] [--strict] [--validate]
 *
 * --strict fails when the template is not deployable yet (no imageTag, no service URLs);
 * --validate adds CDK's CloudFormation schema validation (slower): use both in the pipeline that
 * deploys. The CDK CLI can deploy the result: `npx aws-cdk@2 deploy --app cdk.out`.
 */
import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { buildApp } from './app.js';
import { deployBlockers } from './config.js';

function parseContext(pairs: readonly string[]): Record<string, string> {
  const context: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`bad -c ${JSON.stringify(pair)}: expected key=value`);
    context[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return context;
}

function main(): number {
  const { values } = parseArgs({
    options: {
      context: { type: 'string', short: 'c', multiple: true, default: [] },
      outdir: { type: 'string', short: 'o' },
      strict: { type: 'boolean', default: false },
      validate: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'usage: node --import tsx infra/synth.ts [-c key=value ...] [--outdir cdk.out] [--strict] [--validate]\n(keys: infra/config.ts, docs/deployment.md)\n',
    );
    return 0;
  }
  const started = Date.now();
  const outdir = values.outdir ?? process.env.CDK_OUTDIR ?? 'cdk.out';
  const { app, stack, config } = buildApp({ context: parseContext(values.context), outdir, validate: values.validate });
  const assembly = app.synth();
  const blockers = deployBlockers(config);
  const artifact = assembly.getStackArtifact(stack.artifactId);
  process.stdout.write(
    `synthesised ${stack.stackName} (prefix ${config.prefix}) -> ${relative(process.cwd(), artifact.templateFullPath)} in ${Date.now() - started} ms\n`,
  );
  for (const b of blockers) process.stderr.write(`not deployable yet: ${b}\n`);
  return values.strict && blockers.length > 0 ? 1 : 0;
}

try {
  process.exitCode = main();
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
}
