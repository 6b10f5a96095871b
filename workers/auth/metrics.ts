import type { Registry } from 'prom-client';
import { chargeOutcomeCounter, type ChargeOutcomeCounter } from '../../shared/charges/metrics.js';

/** The auth worker's own metrics, on the worker's registry. docs/operations.md §5. */
export interface AuthMetrics {
  /** Authorisations recorded, by processor and resulting charge status. */
  readonly authorisations: ChargeOutcomeCounter;
}

export const createAuthMetrics = (registry: Registry): AuthMetrics => ({
  authorisations: chargeOutcomeCounter(
    registry,
    'payfleet_authorisations_total',
    'Authorisations recorded, by processor and resulting charge status',
  ),
});
