import type { Message } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { MessageParseError } from '../../shared/errors.js';

const CURRENCIES: ReadonlySet<string> = new Set(Intl.supportedValuesOf('currency'));

/**
 * `AuthorisationRequested` (CONTRACT.md §2). Unknown fields are ignored; `processor` is any
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

/**
 * Parse a body. A failure names the zod path and the message id, never the value: bodies can hold
 * anything an upstream put in them.
 */
export function parseAuthorisationRequested(body: string, message?: Message): AuthorisationRequested {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new MessageParseError('body is not JSON', { messageId: message?.MessageId });
  }
  const r = AuthorisationRequested.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0]!;
    const path = first.path.join('.') || '(body)';
    throw new MessageParseError(`${path}: ${first.message}${r.error.issues.length > 1 ? ` (+${r.error.issues.length - 1} more)` : ''}`, {
      messageId: message?.MessageId,
      path,
    });
  }
  return r.data;
}
