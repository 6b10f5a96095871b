import type { Message } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { parseJsonBody } from '../../shared/core/parse.js';

/**
 * `RefundRequested` (docs/contract.md §2): `amount` in minor units of the charge's currency, > 0;
 * several partial refunds of one charge are allowed. Unknown fields are ignored.
 */
export const RefundRequested = z.object({
  type: z.literal('RefundRequested'),
  refundRequestId: z.uuid(),
  refundId: z.string().min(1).max(255),
  chargeId: z.string().min(1).max(255),
  amount: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  reference: z.string().max(255).optional(),
  requestedAt: z.iso.datetime({ offset: true }),
});
export type RefundRequested = z.infer<typeof RefundRequested>;

export function parseRefundRequested(body: string, message?: Message): RefundRequested {
  return parseJsonBody(RefundRequested, body, message);
}
