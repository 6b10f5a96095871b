/**
 * The deployment's settings: parsed once from CDK context (`-c key=value` on `npm run synth`, or
 * `cdk.json`/`--context` when the CDK CLI runs the app) with zod, like the workers' own config.
 * Every default is documented on its key and in docs/deployment.md.
 *
 * Values the workers also read (prefix, shard counts, shutdown timings, ops port) default to the
 * workers' own zod defaults: the stack asks shared/config for them instead of repeating numbers.
 */
import { z } from 'zod';
import { bootstrapEnvSchema } from '../shared/config/common.js';
import { workerEnvShape } from '../shared/config/worker.js';

import { WORKER_NAMES, type WorkerName } from '../workers/index.js';

export { WORKER_NAMES, type WorkerName };

/** Defaults of the variables the stack and the workers must agree on, from the workers' schemas. */
const WORKER_DEFAULTS = z.object(workerEnvShape).parse({ AWS_REGION: 'defaults-only' });
const BOOTSTRAP_DEFAULTS = bootstrapEnvSchema.parse({ AWS_REGION: 'defaults-only' });

/** pay-connector's defaults for background capture (docs/contract.md §3); the capture worker owns them. */
export const CAPTURE_DEFAULTS = { maxRetries: 96, retryDelaySec: 3600 } as const;

/** Fargate refuses a stopTimeout above this. */
export const FARGATE_MAX_STOP_TIMEOUT_SEC = 120;

const FARGATE_CPU: readonly number[] = [256, 512, 1024, 2048, 4096, 8192, 16_384];

/** Memory (MiB) Fargate accepts with each CPU size: [min, max, step]. */
const FARGATE_MEMORY: Readonly<Record<number, readonly [number, number, number]>> = {
  256: [512, 2048, 512],
  512: [1024, 4096, 1024],
  1024: [2048, 8192, 1024],
  2048: [4096, 16_384, 1024],
  4096: [8192, 30_720, 1024],
  8192: [16_384, 61_440, 4096],
  16384: [32_768, 122_880, 8192],
};

/** Whether Fargate accepts `memoryMiB` with `cpu` (a bad pair fails only at deploy otherwise). */
export function fargateSizeOk(cpu: number, memoryMiB: number): boolean {
  const range = FARGATE_MEMORY[cpu];
  if (!range) return false;
  const [min, max, step] = range;
  return memoryMiB >= min && memoryMiB <= max && (memoryMiB - min) % step === 0;
}

/** Retention periods CloudWatch Logs accepts. */
const LOG_RETENTION_DAYS: readonly number[] = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);
const flag = (def: boolean) => z.union([z.boolean(), z.stringbool()]).default(def);
const text = () => z.string().trim().min(1);
/** An http(s) base URL (trailing slash removed). */
const serviceUrl = () =>
  z
    .url({ protocol: /^https?$/ })
    .transform((v) => v.replace(/\/+$/, ''))
    .optional();

/** Per-worker sizing and scaling. Context key `<worker>` holds a JSON object, e.g. -c 'auth={"maxTasks":20}'. */
const workerSizing = (d: { cpu: number; memoryMiB: number; minTasks: number; maxTasks: number }) =>
  z
    .preprocess(
      (v) => {
        if (typeof v !== 'string') return v;
        try {
          return JSON.parse(v) as unknown;
        } catch {
          return v; // zod then reports "expected object" on the key, like any other bad value
        }
      },
      z
        .object({
          /** Fargate task CPU units (256 = 0.25 vCPU). */
          cpu: z.coerce
            .number()
            .refine((n) => FARGATE_CPU.includes(n), { error: `must be one of ${FARGATE_CPU.join(', ')}` })
            .default(d.cpu),
          /** Fargate task memory. Must be a valid pairing with cpu. */
          memoryMiB: int(d.memoryMiB, 512, 122_880),
          /** Tasks kept running when idle (2 = one per AZ, survives an AZ or a task failure). */
          minTasks: int(d.minTasks, 0, 1000),
          /** Ceiling for scale-out. payout and ledger are also capped by their shard counts. */
          maxTasks: int(d.maxTasks, 1, 1000),
        })
        .strict(),
    )
    .default(d);

export const deploymentContextSchema = z
  .object({
    /** CloudFormation stack name. @default 'Payfleet' */
    stackName: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/)
      .default('Payfleet'),
    /** PAYFLEET_RESOURCE_PREFIX: prefix of every queue, table, secret and log group. @default 'payfleet-' */
    prefix: workerEnvShape.PAYFLEET_RESOURCE_PREFIX,
    /** ECR repository holding the image (same account and region). @default 'payfleet' */
    imageRepository: text().default('payfleet'),
    /** Image tag to run: an immutable tag such as the git SHA. Rolling back = deploying the previous tag. */
    imageTag: text().optional(),
    /** CPU architecture the image was built for. @default 'X86_64' */
    cpuArchitecture: z.enum(['X86_64', 'ARM64']).default('X86_64'),
    /** DLQ redrive: receives before SQS moves a message to the DLQ. @default bootstrap's (10) */
    maxReceiveCount: int(BOOTSTRAP_DEFAULTS.PAYFLEET_MAX_RECEIVE_COUNT, 1, 1000),
    /** Payout shards: lease rows, and the ceiling of payout tasks. @default bootstrap's (8) */
    payoutShards: int(BOOTSTRAP_DEFAULTS.PAYFLEET_PAYOUT_SHARDS, 1, 256),
    /** Ledger outbox shards: the same value for every worker; the ceiling of ledger tasks. @default 8 */
    ledgerShards: int(WORKER_DEFAULTS.PAYFLEET_LEDGER_SHARDS, 1, 256),
    /** Queue VisibilityTimeout (workers set their own on receive and renew it). @default 30 */
    queueVisibilityTimeoutSec: int(30, 0, 43_200),
    /** PAYFLEET_OPS_PORT in every task. @default the workers' (9400) */
    opsPort: int(WORKER_DEFAULTS.PAYFLEET_OPS_PORT, 1, 65_535),
    /** PAYFLEET_SHUTDOWN_GRACE_MS. @default the workers' (25000) */
    shutdownGraceMs: int(WORKER_DEFAULTS.PAYFLEET_SHUTDOWN_GRACE_MS, 0, 600_000),
    /** PAYFLEET_FORCE_EXIT_MS; the ECS stopTimeout is derived from it. @default the workers' (29000) */
    forceExitMs: int(WORKER_DEFAULTS.PAYFLEET_FORCE_EXIT_MS, 1000, 900_000),
    /** PAYFLEET_LOG_LEVEL. @default 'info' */
    logLevel: workerEnvShape.PAYFLEET_LOG_LEVEL,
    /** Days CloudWatch keeps worker logs (a value CloudWatch Logs accepts). @default 90 */
    logRetentionDays: int(90, 1, 3653).refine((d) => LOG_RETENTION_DAYS.includes(d), {
      error: `must be one of ${LOG_RETENTION_DAYS.join(', ')}`,
    }),
    /** PAYFLEET_LIVE: the `live` flag on ledger events. Set true in production. @default false */
    live: flag(false),
    /** Payment Token Service base URL (PAYMENT_TOKEN_SERVICE_URL). Required to deploy. */
    paymentTokenServiceUrl: serviceUrl(),
    /** Wire Stripe (STRIPE_API_KEY from Secrets Manager). @default true */
    stripe: flag(true),
    /** STRIPE_API_BASE_URL. @default the connector's (https://api.stripe.com) */
    stripeApiBaseUrl: serviceUrl(),
    /** Wire Worldpay (merchant code, username, password from Secrets Manager). @default true */
    worldpay: flag(true),
    /** WORLDPAY_API_BASE_URL. Required when worldpay is on. */
    worldpayApiBaseUrl: serviceUrl(),
    /** Wire Chase (OAuth2 client id and secret, merchant id from Secrets Manager). @default false */
    chase: flag(false),
    /** CHASE_API_BASE_URL (Online Payments API v2). Required when chase is on. */
    chaseApiBaseUrl: serviceUrl(),
    /** CHASE_TOKEN_URL (the OAuth2 token endpoint). Required when chase is on. */
    chaseTokenUrl: serviceUrl(),
    /** LHV_API_BASE_URL (LHV Connect). Required to deploy. */
    lhvApiBaseUrl: serviceUrl(),
    /** LHV_DEBTOR_NAME: holder of the account payouts are paid from. Required to deploy. */
    lhvDebtorName: text().optional(),
    /** LHV_DEBTOR_IBAN: the paying account (validated by the payout worker at start). Required to deploy. */
    lhvDebtorIban: text().optional(),
    /** LHV_DEBTOR_BIC: BIC of the paying account. @default 'LHVBEE22' (LHV Pank) */
    lhvDebtorBic: text().default('LHVBEE22'),
    /** LHV's CA bundle is not public-rooted: set true to read LHV_CA_PEM from the LHV secret's `caPem` field. @default false */
    lhvPrivateCa: flag(false),
    /** CAPTURE_PROCESS_MAXIMUM_RETRIES, also sizes the capture queue's age alarm. @default 96 */
    captureMaxRetries: int(CAPTURE_DEFAULTS.maxRetries, 1, 10_000),
    /** CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS (SQS caps a deferral at 12 h). @default 3600 */
    captureRetryDelaySec: int(CAPTURE_DEFAULTS.retryDelaySec, 1, 43_200),
    /** Alarm e-mail subscriber of the alarm topic (optional; subscribe anything else to the topic). */
    alarmEmail: z.email().optional(),
    /** Scrape /metrics with an ADOT collector sidecar into CloudWatch (EMF). Off = no custom-metric alarms. @default true */
    metricsSidecar: flag(true),
    /** ADOT collector image (pin it; public ECR). */
    adotImage: text().default('public.ecr.aws/aws-observability/aws-otel-collector:v0.48.0'),
    /** NAT gateways of the VPC (1 is cheaper; one per AZ survives an AZ outage). @default 2 */
    natGateways: int(2, 1, 3),
    auth: workerSizing({ cpu: 512, memoryMiB: 1024, minTasks: 2, maxTasks: 20 }),
    capture: workerSizing({ cpu: 256, memoryMiB: 512, minTasks: 2, maxTasks: 10 }),
    refund: workerSizing({ cpu: 256, memoryMiB: 512, minTasks: 2, maxTasks: 6 }),
    payout: workerSizing({ cpu: 256, memoryMiB: 512, minTasks: 2, maxTasks: 8 }),
    ledger: workerSizing({ cpu: 256, memoryMiB: 512, minTasks: 2, maxTasks: 8 }),
  })
  .superRefine((c, ctx) => {
    if (c.forceExitMs <= c.shutdownGraceMs) {
      ctx.addIssue({
        code: 'custom',
        path: ['forceExitMs'],
        message: 'must exceed shutdownGraceMs (the workers refuse to start otherwise)',
      });
    }
    if (stopTimeoutSec(c.forceExitMs) > FARGATE_MAX_STOP_TIMEOUT_SEC) {
      ctx.addIssue({
        code: 'custom',
        path: ['forceExitMs'],
        message: `leaves no room under Fargate's ${FARGATE_MAX_STOP_TIMEOUT_SEC}s stopTimeout; keep it at or below ${(FARGATE_MAX_STOP_TIMEOUT_SEC - STOP_MARGIN_SEC) * 1000}`,
      });
    }
    for (const w of WORKER_NAMES) {
      if (!fargateSizeOk(c[w].cpu, c[w].memoryMiB)) {
        ctx.addIssue({
          code: 'custom',
          path: [w, 'memoryMiB'],
          message: `${c[w].memoryMiB} MiB is not a Fargate size for ${c[w].cpu} CPU units`,
        });
      }
      if (c[w].minTasks > c[w].maxTasks)
        ctx.addIssue({ code: 'custom', path: [w, 'minTasks'], message: 'must not exceed maxTasks' });
    }
  });

export type DeploymentConfig = z.output<typeof deploymentContextSchema>;

/** Seconds ECS waits after SIGTERM beyond the worker's own hard exit (log flush, process teardown). */
export const STOP_MARGIN_SEC = 6;

/**
 * ECS stopTimeout for a forced-exit deadline: SIGTERM -> drain (grace) -> hard exit (forceExitMs)
 * -> SIGKILL only after that, so ECS never kills a worker that is still handing work back.
 *
 *   0s SIGTERM ── 25s grace over, hand back ── 29s force exit ── 35s ECS SIGKILL (never reached)
 */
export function stopTimeoutSec(forceExitMs: number): number {
  return Math.ceil(forceExitMs / 1000) + STOP_MARGIN_SEC;
}

/** The most tasks a worker may scale to: payout and ledger gain nothing beyond one task per shard. */
export function maxTasksOf(config: DeploymentConfig, worker: WorkerName): number {
  const ceiling =
    worker === 'payout' ? config.payoutShards : worker === 'ledger' ? config.ledgerShards : Number.POSITIVE_INFINITY;
  return Math.min(config[worker].maxTasks, ceiling);
}

/**
 * Parse CDK context into the deployment config. Throws one line per problem (like the workers).
 * Unknown keys are ignored: the CDK puts its own (feature flags, `aws:cdk:*`) into the same context.
 */
export function parseDeploymentConfig(context: Record<string, unknown>): DeploymentConfig {
  const known = new Set(Object.keys(deploymentContextSchema.shape));
  // CDK's own keys are namespaced (`aws:cdk:...`, `@aws-cdk/...`); a plain unknown key is a typo.
  const unknown = Object.keys(context).filter((k) => !known.has(k) && !/[:/@]/.test(k));
  const result = deploymentContextSchema.safeParse(context);
  const lines = [
    ...unknown.map((k) => `  ${k}: unknown context key (known: ${[...known].join(', ')})`),
    ...(result.success ? [] : result.error.issues.map((i) => `  ${i.path.join('.') || '(context)'}: ${i.message}`)),
  ];
  if (lines.length > 0 || !result.success) throw new Error(`payfleet infra: bad context\n${lines.join('\n')}`);
  return result.data;
}

/** Settings a template can be synthesised without but must not be deployed without. */
export function deployBlockers(config: DeploymentConfig): string[] {
  const blockers: string[] = [];
  if (!config.imageTag)
    blockers.push('imageTag is not set: pass -c imageTag=<immutable tag pushed to ECR> (the template runs a placeholder)');
  if (!config.paymentTokenServiceUrl) blockers.push('paymentTokenServiceUrl is not set: auth cannot decrypt tokens');
  if (!config.lhvApiBaseUrl) blockers.push('lhvApiBaseUrl is not set: payout cannot reach LHV Connect');
  if (!config.lhvDebtorName || !config.lhvDebtorIban)
    blockers.push('lhvDebtorName / lhvDebtorIban are not set: payout has no account to pay from');
  if (config.worldpay && !config.worldpayApiBaseUrl) blockers.push('worldpayApiBaseUrl is not set while worldpay=true');
  if (config.chase && (!config.chaseApiBaseUrl || !config.chaseTokenUrl))
    blockers.push('chaseApiBaseUrl / chaseTokenUrl are not set while chase=true');
  return blockers;
}

/** What unset URLs become in a synth-only template: the reserved `.invalid` TLD never resolves. */
export const PLACEHOLDER_URL = (what: string) => `https://${what}.placeholder.invalid`;
