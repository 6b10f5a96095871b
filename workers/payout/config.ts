/**
 * Configuration of the payout worker (docs/payouts.md "Configuration"), on top of the common worker
 * variables (shared/config/worker.ts). Parsed once by runWorker with {@link payoutEnvShape} and
 * {@link payoutInvariants}; one line per bad variable; values are never echoed.
 *
 * Shard leases. The LHV design locks a shard for 30 s, re-locks every 20 s and waits 10 s when no
 * shard is free. The defaults here keep 30 s and 10 s but renew every 10 s: a lease must be at
 * least twice its renew period, or a single slow renew loses it.
 *
 *   30 s / 20 s:  0 ── acquire ──── 20 renew (slow DynamoDB call, GC pause, throttled: +11 s) ─ 30 EXPIRED
 *                 only 10 s of slack, less than one SDK request timeout; another worker takes the
 *                 shard at 30.1 s while we still believe we hold it (our commits are fenced, so no
 *                 double effect, but the in-flight batch is abandoned and work stalls).
 *   30 s / 10 s:  a renew that fails at 10 s still leaves two more tries before expiry.
 *
 * PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE=true accepts the design's literal 30/20 (or anything with
 * renew < lease) for operators who must match it; see shard-keeper.ts for how it is honoured.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { z } from 'zod';
import { bool, int, url } from '../../shared/config/env.js';
import { isValidBic, isValidIban, normalizeIban } from './lhv/pain001.js';
import type { DebtorAccount } from './lhv/types.js';

const pem = () => z.string().refine((v) => v.includes('-----BEGIN'), { error: 'must be PEM text (-----BEGIN ...)' });

/** Variables of the payout worker (besides the common worker ones). */
export const payoutEnvShape = {
  /** Payout shards: lease rows `payout-shard#NNN` created by bootstrap. Same value everywhere. @default 8 */
  PAYFLEET_PAYOUT_SHARDS: int(8, { min: 1, max: 256 }),
  /** The `live` flag on this deployment's ledger events. @default false */
  PAYFLEET_LIVE: bool(false),

  /** LHV Connect base URL, e.g. https://connect.lhv.com (http:// only for a loopback sandbox). Required. */
  LHV_API_BASE_URL: url(),
  /** mTLS client certificate chain as PEM text (ECS fills it from Secrets Manager). */
  LHV_CLIENT_CERT_PEM: pem().optional(),
  /** Private key of the client certificate, PEM text. */
  LHV_CLIENT_KEY_PEM: pem().optional(),
  /** Extra CA bundle (private CA) as PEM text; the system roots are used when absent. */
  LHV_CA_PEM: pem().optional(),
  /** Alternatively, paths of the same three PEM files (local runs). */
  LHV_CLIENT_CERT_FILE: z.string().min(1).optional(),
  LHV_CLIENT_KEY_FILE: z.string().min(1).optional(),
  LHV_CA_FILE: z.string().min(1).optional(),
  /** Deadline of one LHV call (connect + send + answer). Keep it below PAYFLEET_SHUTDOWN_GRACE_MS. @default 10000 */
  LHV_TIMEOUT_MS: int(10_000, { min: 100, max: 120_000 }),
  /** Concurrent connections to LHV. @default 16 */
  LHV_MAX_CONNECTIONS: int(16, { min: 1, max: 256 }),
  /** Method of the advanced heartbeat (CONTRACT says GET; LHV's page shows POST). @default GET */
  LHV_HEARTBEAT_MQ_METHOD: z.enum(['GET', 'POST']).default('GET'),
  /** Allow http:// to a non-loopback host (docker-compose's sandbox only; never in production). @default false */
  LHV_ALLOW_INSECURE_HTTP: bool(false),
  /** Our paying account at LHV: holder name, IBAN, BIC. Required. */
  LHV_DEBTOR_NAME: z.string().trim().min(1, { error: 'must not be empty' }).max(140),
  LHV_DEBTOR_IBAN: z.string().refine((v) => isValidIban(v), { error: 'must be a valid IBAN (shape and mod-97 checksum)' }),
  LHV_DEBTOR_BIC: z
    .string()
    .transform((v) => v.replace(/\s+/g, '').toUpperCase())
    .refine((v) => isValidBic(v), { error: 'must be an 8- or 11-character BIC' }),

  /** Shard lease length. @default 30000 (the design's 30 s) */
  PAYFLEET_PAYOUT_SHARD_LEASE_MS: int(30_000, { min: 200, max: 600_000 }),
  /** Shard lease renew period; at most half the lease unless the flag below is set. @default 10000 */
  PAYFLEET_PAYOUT_SHARD_RENEW_MS: int(10_000, { min: 50, max: 300_000 }),
  /** Wait between attempts to take a shard when none is free (and the rebalance period). @default 10000 (the design's 10 s) */
  PAYFLEET_PAYOUT_SHARD_BACKOFF_MS: int(10_000, { min: 50, max: 600_000 }),
  /** Accept a renew period above half the lease (e.g. the design's 30 s / 20 s). @default false */
  PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE: bool(false),
  /** Most shards one process holds; 0 = its fair share (shards / live payout workers). @default 0 */
  PAYFLEET_PAYOUT_MAX_SHARDS: int(0, { min: 0, max: 256 }),

  /** Initiation loop: wait when a shard has nothing to send. @default 5000 (the design's 5 s) */
  PAYFLEET_PAYOUT_INITIATION_POLL_MS: int(5_000, { min: 10, max: 600_000 }),
  /** Payouts per pain.001 request (docs/contract.md §7: at most 100). @default 100 */
  PAYFLEET_PAYOUT_BATCH_SIZE: int(100, { min: 1, max: 100 }),
  /** A partial batch is sent once no payout arrived in its shard for this long. @default 1000 */
  PAYFLEET_PAYOUT_BATCH_QUIET_MS: int(1_000, { min: 0, max: 600_000 }),
  /** ...or once its oldest payout has waited this long, whatever keeps arriving. @default 10000 */
  PAYFLEET_PAYOUT_BATCH_MAX_WAIT_MS: int(10_000, { min: 0, max: 3_600_000 }),
  /** HTTP attempts per batch per cycle (429/5xx/timeouts), same key every time. @default 6 */
  PAYFLEET_PAYOUT_SEND_ATTEMPTS: int(6, { min: 1, max: 100 }),
  /** First retry delay of a send. @default 250 */
  PAYFLEET_PAYOUT_RETRY_BASE_MS: int(250, { min: 0, max: 60_000 }),
  /** Longest retry delay of a send (the design: up to 5 s). @default 5000 */
  PAYFLEET_PAYOUT_RETRY_MAX_MS: int(5_000, { min: 0, max: 300_000 }),
  /** Wait between /messages/next polls when LHV has nothing for us. @default 2000 */
  PAYFLEET_PAYOUT_RESPONSE_POLL_MS: int(2_000, { min: 10, max: 600_000 }),
  /** Readiness checks are repeated this often until they all pass. @default 2000 */
  PAYFLEET_PAYOUT_READINESS_POLL_MS: int(2_000, { min: 10, max: 600_000 }),
  /** After that, the LHV message-queue round trip is repeated this often (for /health/ready). @default 30000 */
  PAYFLEET_PAYOUT_READINESS_RECHECK_MS: int(30_000, { min: 100, max: 3_600_000 }),
} as const;

type PayoutEnv = z.output<z.ZodObject<typeof payoutEnvShape>>;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Cross-field checks, one line per problem, each naming its variable. */
export function payoutInvariants(env: PayoutEnv, ctx: z.RefinementCtx): void {
  const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  const lease = env.PAYFLEET_PAYOUT_SHARD_LEASE_MS;
  const renew = env.PAYFLEET_PAYOUT_SHARD_RENEW_MS;
  if (renew >= lease) {
    issue(
      'PAYFLEET_PAYOUT_SHARD_RENEW_MS',
      `must be less than PAYFLEET_PAYOUT_SHARD_LEASE_MS (${lease}); the lease would lapse between renewals`,
    );
  } else if (renew * 2 > lease && !env.PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE) {
    issue(
      'PAYFLEET_PAYOUT_SHARD_RENEW_MS',
      `must be at most half of PAYFLEET_PAYOUT_SHARD_LEASE_MS (${lease}): one slow renewal would lose the shard; set PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE=true to accept it anyway`,
    );
  }
  if (env.PAYFLEET_PAYOUT_MAX_SHARDS > env.PAYFLEET_PAYOUT_SHARDS) {
    issue('PAYFLEET_PAYOUT_MAX_SHARDS', `must not exceed PAYFLEET_PAYOUT_SHARDS (${env.PAYFLEET_PAYOUT_SHARDS})`);
  }
  if (env.PAYFLEET_PAYOUT_RETRY_BASE_MS > env.PAYFLEET_PAYOUT_RETRY_MAX_MS) {
    issue('PAYFLEET_PAYOUT_RETRY_BASE_MS', 'must not exceed PAYFLEET_PAYOUT_RETRY_MAX_MS');
  }
  const pems: [string, string | undefined, string | undefined][] = [
    ['LHV_CLIENT_CERT', env.LHV_CLIENT_CERT_PEM, env.LHV_CLIENT_CERT_FILE],
    ['LHV_CLIENT_KEY', env.LHV_CLIENT_KEY_PEM, env.LHV_CLIENT_KEY_FILE],
    ['LHV_CA', env.LHV_CA_PEM, env.LHV_CA_FILE],
  ];
  for (const [name, text, file] of pems) {
    if (text && file) issue(`${name}_FILE`, `set either ${name}_PEM or ${name}_FILE, not both`);
    if (file) {
      try {
        accessSync(file, constants.R_OK);
      } catch {
        issue(`${name}_FILE`, 'is not a readable file');
      }
    }
  }
  let base: URL | undefined;
  try {
    base = new URL(env.LHV_API_BASE_URL);
  } catch {
    // url() already reported it.
  }
  if (base?.protocol === 'https:') {
    if (!env.LHV_CLIENT_CERT_PEM && !env.LHV_CLIENT_CERT_FILE)
      issue('LHV_CLIENT_CERT_PEM', 'is required for an https LHV_API_BASE_URL (mTLS); or set LHV_CLIENT_CERT_FILE');
    if (!env.LHV_CLIENT_KEY_PEM && !env.LHV_CLIENT_KEY_FILE)
      issue('LHV_CLIENT_KEY_PEM', 'is required for an https LHV_API_BASE_URL (mTLS); or set LHV_CLIENT_KEY_FILE');
  } else if (base?.protocol === 'http:' && !LOOPBACK.has(base.hostname) && !env.LHV_ALLOW_INSECURE_HTTP) {
    issue(
      'LHV_API_BASE_URL',
      'uses http:// for a non-loopback host; use https with mTLS (or LHV_ALLOW_INSECURE_HTTP=true for a local sandbox)',
    );
  }
}

/** The payout worker's settings, frozen by runWorker. Units in the names. */
export interface PayoutSettings {
  readonly shards: number;
  readonly live: boolean;
  readonly lhv: {
    readonly baseUrl: string;
    readonly cert?: string;
    readonly key?: string;
    readonly ca?: string;
    readonly timeoutMs: number;
    readonly maxConnections: number;
    readonly heartbeatMqMethod: 'GET' | 'POST';
    readonly allowInsecureHttp: boolean;
  };
  readonly debtor: DebtorAccount;
  readonly shardLease: {
    readonly leaseMs: number;
    readonly renewMs: number;
    readonly backoffMs: number;
    readonly allowTight: boolean;
    readonly maxShardsPerProcess: number;
  };
  readonly initiation: {
    readonly pollMs: number;
    readonly batchSize: number;
    readonly quietMs: number;
    readonly maxWaitMs: number;
    readonly sendAttempts: number;
    readonly retryBaseMs: number;
    readonly retryMaxMs: number;
  };
  readonly responses: { readonly pollMs: number };
  readonly readiness: { readonly pollMs: number; readonly recheckMs: number };
}

/** Settings from parsed variables; reads the PEM files named by the *_FILE variables. */
export function toPayoutSettings(env: PayoutEnv): PayoutSettings {
  const read = (text: string | undefined, file: string | undefined) => text ?? (file ? readFileSync(file, 'utf8') : undefined);
  const cert = read(env.LHV_CLIENT_CERT_PEM, env.LHV_CLIENT_CERT_FILE);
  const key = read(env.LHV_CLIENT_KEY_PEM, env.LHV_CLIENT_KEY_FILE);
  const ca = read(env.LHV_CA_PEM, env.LHV_CA_FILE);
  return {
    shards: env.PAYFLEET_PAYOUT_SHARDS,
    live: env.PAYFLEET_LIVE,
    lhv: {
      baseUrl: env.LHV_API_BASE_URL,
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(ca ? { ca } : {}),
      timeoutMs: env.LHV_TIMEOUT_MS,
      maxConnections: env.LHV_MAX_CONNECTIONS,
      heartbeatMqMethod: env.LHV_HEARTBEAT_MQ_METHOD,
      allowInsecureHttp: env.LHV_ALLOW_INSECURE_HTTP,
    },
    debtor: { name: env.LHV_DEBTOR_NAME, iban: normalizeIban(env.LHV_DEBTOR_IBAN), bic: env.LHV_DEBTOR_BIC },
    shardLease: {
      leaseMs: env.PAYFLEET_PAYOUT_SHARD_LEASE_MS,
      renewMs: env.PAYFLEET_PAYOUT_SHARD_RENEW_MS,
      backoffMs: env.PAYFLEET_PAYOUT_SHARD_BACKOFF_MS,
      allowTight: env.PAYFLEET_PAYOUT_ALLOW_TIGHT_SHARD_LEASE,
      maxShardsPerProcess: env.PAYFLEET_PAYOUT_MAX_SHARDS,
    },
    initiation: {
      pollMs: env.PAYFLEET_PAYOUT_INITIATION_POLL_MS,
      batchSize: env.PAYFLEET_PAYOUT_BATCH_SIZE,
      quietMs: env.PAYFLEET_PAYOUT_BATCH_QUIET_MS,
      maxWaitMs: env.PAYFLEET_PAYOUT_BATCH_MAX_WAIT_MS,
      sendAttempts: env.PAYFLEET_PAYOUT_SEND_ATTEMPTS,
      retryBaseMs: env.PAYFLEET_PAYOUT_RETRY_BASE_MS,
      retryMaxMs: env.PAYFLEET_PAYOUT_RETRY_MAX_MS,
    },
    responses: { pollMs: env.PAYFLEET_PAYOUT_RESPONSE_POLL_MS },
    readiness: { pollMs: env.PAYFLEET_PAYOUT_READINESS_POLL_MS, recheckMs: env.PAYFLEET_PAYOUT_READINESS_RECHECK_MS },
  };
}

/** The payout worker's variables as its spec declares them: the schema, the cross-field checks, the settings. */
export const payoutVariables = { env: payoutEnvShape, refine: payoutInvariants, settings: toPayoutSettings };
