import { describe, expect, it } from 'vitest';
import { createProcessorRegistry } from '../../shared/connectors/registry.js';
import {
  createSandboxConnector,
  SANDBOX_CARDS,
  SANDBOX_REFUND_AMOUNTS,
  sandboxRefundRef,
} from '../../shared/connectors/sandbox.js';
import { SensitiveCard } from '../../shared/connectors/sensitive-card.js';
import type { RefundRequest } from '../../shared/connectors/types.js';

const sandbox = createSandboxConnector();

async function captured(number: string = SANDBOX_CARDS.approve): Promise<string> {
  const out = await sandbox.authorise({
    chargeId: 'ch-1',
    gatewayAccountId: 'ga-1',
    amount: 10_000,
    currency: 'GBP',
    reference: 'ref',
    description: 'desc',
    idempotencyKey: `auth-${number}`,
    card: new SensitiveCard({ number, exp_month: 12, exp_year: 2030, cvc: '123', cardholder_name: 'S' }),
  });
  if (out.kind !== 'approved') throw new Error(`expected approved, got ${out.kind}`);
  return out.processorRef;
}

const refundOf = (processorRef: string, amount: number, idempotencyKey = `payfleet-refund-${amount}`): RefundRequest => ({
  chargeId: 'ch-1',
  refundId: 'rf-1',
  processorRef,
  amount,
  currency: 'GBP',
  idempotencyKey,
});

describe('Connector: sandbox — refunds', () => {
  it('refunds at once with a ref derived from the key alone (the same on every retry); lookup says refunded', async () => {
    const r = refundOf(await captured(), 1250, 'k-1');
    const out = await sandbox.refund(r);
    expect(out).toEqual({ kind: 'refunded', refundRef: sandboxRefundRef('refund', 'k-1') });
    expect(await sandbox.refund(r)).toEqual(out);
    expect(await sandbox.lookupRefund(r)).toEqual({
      kind: 'refunded',
      refundRef: sandboxRefundRef('refund', 'k-1'),
      amount: 1250,
    });
  });

  it('pendingThenRefunded: submitted, and the lookup confirms it', async () => {
    const r = refundOf(await captured(), SANDBOX_REFUND_AMOUNTS.pendingThenRefunded);
    const out = await sandbox.refund(r);
    expect(out).toMatchObject({ kind: 'submitted', refundRef: expect.stringMatching(/^sbxre_pending_/) });
    const refundRef = out.kind === 'submitted' ? out.refundRef : undefined;
    expect(await sandbox.lookupRefund({ ...r, refundRef })).toEqual({ kind: 'refunded', refundRef, amount: r.amount });
    expect(await sandbox.lookupRefund(r)).toMatchObject({ kind: 'refunded' });
  });

  it('pendingThenFailed: submitted, and the lookup says failed', async () => {
    const r = refundOf(await captured(), SANDBOX_REFUND_AMOUNTS.pendingThenFailed);
    expect(await sandbox.refund(r)).toMatchObject({ kind: 'submitted' });
    expect(await sandbox.lookupRefund(r)).toMatchObject({ kind: 'failed', code: 'refund_failed' });
  });

  it('rejected and retryable error leave nothing to find', async () => {
    const ref = await captured();
    const rejected = refundOf(ref, SANDBOX_REFUND_AMOUNTS.rejected);
    expect(await sandbox.refund(rejected)).toMatchObject({ kind: 'rejected', code: 'refund_declined' });
    expect(await sandbox.lookupRefund(rejected)).toEqual({ kind: 'not_found' });
    const error = refundOf(ref, SANDBOX_REFUND_AMOUNTS.errorRetryable);
    expect(await sandbox.refund(error)).toMatchObject({ kind: 'error', retryable: true, code: 'processing_error' });
    expect(await sandbox.lookupRefund(error)).toEqual({ kind: 'not_found' });
  });

  it('timeoutAfterRefund: ambiguous, and the lookup finds it refunded', async () => {
    const r = refundOf(await captured(), SANDBOX_REFUND_AMOUNTS.timeoutAfterRefund);
    expect(await sandbox.refund(r)).toMatchObject({ kind: 'ambiguous' });
    expect(await sandbox.lookupRefund(r)).toMatchObject({ kind: 'refunded', amount: r.amount });
  });

  it('a charge the sandbox never authorised (or declined) is NOT_REFUNDABLE', async () => {
    expect(await sandbox.refund(refundOf('pi_foreign', 100))).toMatchObject({ kind: 'rejected', code: 'NOT_REFUNDABLE' });
    const declined = await sandbox.authorise({
      chargeId: 'ch-2',
      gatewayAccountId: 'ga-1',
      amount: 100,
      currency: 'GBP',
      reference: 'ref',
      description: 'desc',
      idempotencyKey: 'auth-declined',
      card: new SensitiveCard({ number: SANDBOX_CARDS.decline, exp_month: 12, exp_year: 2030, cvc: '123', cardholder_name: 'S' }),
    });
    const ref = declined.processorRef ?? '';
    expect(await sandbox.refund(refundOf(ref, 100))).toMatchObject({ kind: 'rejected', code: 'NOT_REFUNDABLE' });
    expect(await sandbox.lookupRefund(refundOf(ref, 100))).toEqual({ kind: 'not_found' });
  });

  it('the registry hands out connectors that refund', async () => {
    const registry = createProcessorRegistry({});
    try {
      expect(await registry.get('sandbox').refund(refundOf(await captured(), 100))).toMatchObject({ kind: 'refunded' });
    } finally {
      await registry.close();
    }
  });
});
