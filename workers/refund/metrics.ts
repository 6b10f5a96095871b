import { Counter, type Registry } from 'prom-client';

/**
 * The refund worker's counters, on the worker's registry (so they carry `worker`). docs/operations.md §5.
 *
 *   payfleet_refunds_total{processor, outcome}   outcome: REFUND_SUBMITTED (created and sent), REFUNDED,
 *                                                REFUND_ERROR, PENDING (the processor confirms later: deferred)
 *   payfleet_refund_refusals_total{code}         refused before anything was created: NOT_REFUNDABLE,
 *                                                REFUND_AMOUNT_UNAVAILABLE, CHARGE_NOT_FOUND, REFUND_ID_CONFLICT …
 */
export interface RefundMetrics {
  readonly refunds: Counter<'processor' | 'outcome'>;
  readonly refusals: Counter<'code'>;
}

export const createRefundMetrics = (registry: Registry): RefundMetrics => ({
  refunds: new Counter({
    name: 'payfleet_refunds_total',
    help: 'Refund outcomes recorded, by processor and resulting refund status (PENDING: deferred until the processor confirms)',
    labelNames: ['processor', 'outcome'],
    registers: [registry],
  }),
  refusals: new Counter({
    name: 'payfleet_refund_refusals_total',
    help: 'Refund requests refused before a refund was created, by dead-letter code',
    labelNames: ['code'],
    registers: [registry],
  }),
});
