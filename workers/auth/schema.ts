import type { Message } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { parseJsonBody } from '../../shared/core/parse.js';

const CURRENCIES: ReadonlySet<string> = new Set(Intl.supportedValuesOf('currency'));

/**
 * `AuthorisationRequested` (docs/contract.md §2). Unknown fields are ignored; `processor` is any
 * string here so that an unknown one is reported as UNKNOWN_PROCESSOR, not as a schema failure.
 */
export const AuthorisationRequested = z.object({
  type: z.literal('AuthorisationRequested'),
  authRequestId: z.uuid(),
  chargeId: z.string().min(1).max(255),
  gatewayAccountId: z.string().min(1).max(255),
  processor: z.string().min(1).max(64),
  amount: z.number().int().positive().max(100_000_000_00),
  currency: z.string().refine((c) => CURRENCIES.has(c), { error: 'must be an ISO 4217 currency code' }),
  paymentTokenId: z.string().min(1).max(255),
  reference: z.string().max(255),
  description: z.string().max(255),
  requestedAt: z.iso.datetime({ offset: true }),
});
export type AuthorisationRequested = z.infer<typeof AuthorisationRequested>;

export function parseAuthorisationRequested(body: string, message?: Message): AuthorisationRequested {
  return parseJsonBody(AuthorisationRequested, body, message);
}
