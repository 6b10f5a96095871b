/**
 * `CheckoutApprovalAccepted` (docs/contract.md §2) as it arrives on payout-events.fifo: either the event
 * itself ("raw message delivery") or wrapped in an SNS notification envelope whose `Message` is the
 * event as a JSON string. Both parse to the same value; anything else is a terminal
 * MessageParseError (-> DLQ `INVALID_MESSAGE`, the body kept byte for byte).
 *
 * Beyond the shape, the SEPA rules the bank would apply are checked here, at the edge, so a payout
 * that can never be sent is dead-lettered on arrival instead of poisoning a batch of 100 later:
 * EUR only, a paymentId usable as EndToEndId, a valid IBAN (mod-97) and BIC, a creditor name that
 * survives cleaning to the SEPA character set. Error texts never quote the IBAN.
 */
import type { Message } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { parseJsonBody } from '../../shared/core/parse.js';
import { MessageParseError } from '../../shared/errors.js';
import { isSepaIdentifier, isValidBic, isValidIban, toSepaText } from './lhv/pain001.js';

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** SEPA's largest credit transfer, 999,999,999.99 EUR, in cents. */
const MAX_AMOUNT = 99_999_999_999;

export const CheckoutApprovalAccepted = z.object({
  eventType: z.literal('CheckoutApprovalAccepted'),
  eventId: z.uuid(),
  paymentId: z
    .string()
    .min(1)
    .max(255)
    .refine((id) => isSepaIdentifier(id) || UUID.test(id), {
      error: "must be usable as a SEPA EndToEndId (1-35 of A-Z a-z 0-9 / - ? : ( ) . , ' + or a UUID)",
    }),
  amount: z.number().int().positive().max(MAX_AMOUNT),
  currency: z.literal('EUR', { error: 'must be EUR (LHV payouts are SEPA credit transfers)' }),
  creditor: z.object({
    name: z
      .string()
      .max(255)
      .refine((n) => toSepaText(n, 70) !== '', { error: 'must contain characters of the SEPA character set' }),
    iban: z.string().max(64).refine(isValidIban, { error: 'must be a valid IBAN (shape and mod-97 checksum)' }),
    bic: z
      .string()
      .max(16)
      .refine((b) => isValidBic(b.replace(/\s+/g, '').toUpperCase()), { error: 'must be an 8- or 11-character BIC' })
      .optional(),
  }),
  remittanceInformation: z.string().max(1000),
  approvedAt: z.iso.datetime({ offset: true }),
});
export type CheckoutApprovalAccepted = z.infer<typeof CheckoutApprovalAccepted>;

/** The SNS notification envelope (only the part we use). */
const SnsEnvelope = z.object({ Type: z.literal('Notification'), Message: z.string() });

/** Parse a payout-events body, raw or SNS-wrapped. Throws MessageParseError (terminal). */
export function parseCheckoutApprovalAccepted(body: string, message?: Message): CheckoutApprovalAccepted {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new MessageParseError('body is not JSON', { messageId: message?.MessageId });
  }
  if (typeof json === 'object' && json !== null && 'Type' in json) {
    const envelope = SnsEnvelope.safeParse(json);
    if (!envelope.success) {
      const type = (json as { Type?: unknown }).Type;
      throw new MessageParseError(
        `an SNS ${typeof type === 'string' ? type.slice(0, 40) : 'message'} without a Notification Message string is not a payout event`,
        { messageId: message?.MessageId, path: 'Type' },
      );
    }
    try {
      return parseJsonBody(CheckoutApprovalAccepted, envelope.data.Message, message);
    } catch (err) {
      if (err instanceof MessageParseError) {
        throw new MessageParseError(`SNS Message: ${err.message}`, {
          messageId: message?.MessageId,
          path: `Message.${err.path ?? ''}`,
        });
      }
      throw err;
    }
  }
  return parseJsonBody(CheckoutApprovalAccepted, body, message);
}
