/**
 * What each worker's container is given: plain environment variables and variables filled from
 * Secrets Manager. The ONE place where the deployment names worker variables: the stack builds
 * task definitions from it, and test/infra checks it against each worker's zod schema (every
 * variable known, every required one present, every value parses).
 *
 * Data only (no CDK types), so tests and docs can read it without synthesising anything.
 */
import { type DeploymentConfig, PLACEHOLDER_URL, type WorkerName } from './config.js';

/**
 * Secrets the fleet reads, one JSON secret each, named `${prefix}secret/${name}` (e.g.
 * `payfleet-secret/stripe`). No name may end in a hyphen and six characters: ECS refers to the
 * secrets by partial ARN, which Secrets Manager would mistake for a full ARN's random suffix.
 * Operators create them before the first deploy (docs/deployment.md); the stack only references
 * them, so their values never pass through CloudFormation and deleting the stack keeps them.
 */
export const SECRETS = {
  paymentTokenService: { name: 'payment-token-service', fields: ['apiKey'], description: 'Payment Token Service API key' },
  stripe: { name: 'stripe', fields: ['apiKey'], description: 'Stripe secret key (sk_live_...)' },
  worldpay: {
    name: 'worldpay',
    fields: ['merchantCode', 'username', 'password'],
    description: 'Worldpay XML Direct credentials',
  },
  chase: {
    name: 'chase',
    fields: ['clientId', 'clientSecret', 'merchantId'],
    description: 'J.P. Morgan Payments (Chase) OAuth2 client credentials and merchant id',
  },
  lhv: {
    name: 'lhv-mtls',
    fields: ['certificatePem', 'privateKeyPem'],
    description: 'LHV Connect mTLS client certificate (PEM chain) and key',
  },
} as const satisfies Record<string, { name: string; fields: readonly string[]; description: string }>;

export type SecretKey = keyof typeof SECRETS;

/** A variable filled by ECS from one JSON field of one secret at task start. */
export interface SecretRef {
  readonly secret: SecretKey;
  readonly field: string;
}

export interface WorkerEnvironment {
  readonly environment: Readonly<Record<string, string>>;
  readonly secrets: Readonly<Record<string, SecretRef>>;
}

/** Secret names of a deployment. */
export function secretName(prefix: string, key: SecretKey): string {
  return `${prefix}secret/${SECRETS[key].name}`;
}

/**
 * The processor connectors (docs/contract.md §7) as auth and capture read them
 * (shared/connectors/registry.ts connectorEnvShape). A processor is wired only when enabled, so a
 * deployment without Worldpay does not need (or reference) its secret. Only auth decrypts payment
 * tokens, so only auth is given the token service.
 */
function connectorEnvironment(config: DeploymentConfig, withTokenService: boolean): WorkerEnvironment {
  const environment: Record<string, string> = {
    // Production never authorises against the in-process sandbox processor.
    PAYFLEET_SANDBOX_PROCESSOR_ENABLED: 'false',
  };
  const secrets: Record<string, SecretRef> = {};
  if (withTokenService) {
    environment.PAYMENT_TOKEN_SERVICE_URL = config.paymentTokenServiceUrl ?? PLACEHOLDER_URL('payment-token-service');
    secrets.PAYMENT_TOKEN_SERVICE_API_KEY = { secret: 'paymentTokenService', field: 'apiKey' };
  }
  if (config.stripe) {
    if (config.stripeApiBaseUrl) environment.STRIPE_API_BASE_URL = config.stripeApiBaseUrl;
    secrets.STRIPE_API_KEY = { secret: 'stripe', field: 'apiKey' };
  }
  if (config.worldpay) {
    environment.WORLDPAY_API_BASE_URL = config.worldpayApiBaseUrl ?? PLACEHOLDER_URL('worldpay');
    secrets.WORLDPAY_MERCHANT_CODE = { secret: 'worldpay', field: 'merchantCode' };
    secrets.WORLDPAY_USERNAME = { secret: 'worldpay', field: 'username' };
    secrets.WORLDPAY_PASSWORD = { secret: 'worldpay', field: 'password' };
  }
  if (config.chase) {
    environment.CHASE_API_BASE_URL = config.chaseApiBaseUrl ?? PLACEHOLDER_URL('chase');
    environment.CHASE_TOKEN_URL = config.chaseTokenUrl ?? PLACEHOLDER_URL('chase-oauth');
    secrets.CHASE_CLIENT_ID = { secret: 'chase', field: 'clientId' };
    secrets.CHASE_CLIENT_SECRET = { secret: 'chase', field: 'clientSecret' };
    secrets.CHASE_MERCHANT_ID = { secret: 'chase', field: 'merchantId' };
  }
  return { environment, secrets };
}

/**
 * Every variable of `worker`'s container. `region` is the stack's region (a CloudFormation token
 * in the template). Values that the stack also relies on (ops port, force-exit, shard counts) are
 * always set explicitly, so the template and the process can never disagree on a default.
 */
export function workerEnvironment(worker: WorkerName, config: DeploymentConfig, region: string): WorkerEnvironment {
  const common: Record<string, string> = {
    AWS_REGION: region,
    PAYFLEET_RESOURCE_PREFIX: config.prefix,
    PAYFLEET_OPS_PORT: String(config.opsPort),
    PAYFLEET_LOG_LEVEL: config.logLevel,
    PAYFLEET_LEDGER_SHARDS: String(config.ledgerShards),
    PAYFLEET_SHUTDOWN_GRACE_MS: String(config.shutdownGraceMs),
    PAYFLEET_FORCE_EXIT_MS: String(config.forceExitMs),
  };
  switch (worker) {
    case 'auth': {
      const c = connectorEnvironment(config, true);
      return { environment: { ...common, ...c.environment, PAYFLEET_LIVE: String(config.live) }, secrets: c.secrets };
    }
    case 'capture': {
      const c = connectorEnvironment(config, false);
      return {
        environment: {
          ...common,
          ...c.environment,
          // Set explicitly: the capture queue's age alarm is sized from the same two numbers.
          CAPTURE_PROCESS_MAXIMUM_RETRIES: String(config.captureMaxRetries),
          CAPTURE_PROCESS_FAILED_CAPTURE_RETRY_DELAY_IN_SECONDS: String(config.captureRetryDelaySec),
        },
        secrets: c.secrets,
      };
    }
    case 'refund': {
      const c = connectorEnvironment(config, false);
      return { environment: { ...common, ...c.environment }, secrets: c.secrets };
    }
    case 'payout':
      return {
        environment: {
          ...common,
          PAYFLEET_PAYOUT_SHARDS: String(config.payoutShards),
          PAYFLEET_LIVE: String(config.live),
          LHV_API_BASE_URL: config.lhvApiBaseUrl ?? PLACEHOLDER_URL('lhv-connect'),
          LHV_DEBTOR_NAME: config.lhvDebtorName ?? PLACEHOLDER_DEBTOR.name,
          LHV_DEBTOR_IBAN: config.lhvDebtorIban ?? PLACEHOLDER_DEBTOR.iban,
          LHV_DEBTOR_BIC: config.lhvDebtorBic,
        },
        secrets: {
          LHV_CLIENT_CERT_PEM: { secret: 'lhv', field: 'certificatePem' },
          LHV_CLIENT_KEY_PEM: { secret: 'lhv', field: 'privateKeyPem' },
          ...(config.lhvPrivateCa ? { LHV_CA_PEM: { secret: 'lhv', field: 'caPem' } } : {}),
        },
      };
    case 'ledger':
      return { environment: common, secrets: {} };
  }
}

/** What a synth-only template pays from (deployBlockers reports it): a well-formed, made-up account. */
const PLACEHOLDER_DEBTOR = { name: 'UNSET - pass lhvDebtorName', iban: 'EE382200221020145685' } as const;

/** The one-off `payfleet bootstrap` task: verifies what the stack created and writes the shard rows. */
export function bootstrapEnvironment(config: DeploymentConfig, region: string): Readonly<Record<string, string>> {
  return {
    AWS_REGION: region,
    PAYFLEET_RESOURCE_PREFIX: config.prefix,
    // Must equal the stack's, or bootstrap would try to "repair" the RedrivePolicy (and be refused).
    PAYFLEET_MAX_RECEIVE_COUNT: String(config.maxReceiveCount),
    PAYFLEET_PAYOUT_SHARDS: String(config.payoutShards),
    PAYFLEET_LEDGER_SHARDS: String(config.ledgerShards),
  };
}
