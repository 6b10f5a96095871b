import type { Message } from '@aws-sdk/client-sqs';
import type { z } from 'zod';
import { MessageParseError } from '../errors.js';

/**
 * Parse a message body as JSON and validate it with `schema`. A failure is a terminal
 * MessageParseError naming the zod path and the message id, never the value: bodies can hold
 * anything an upstream put in them.
 */
export function parseJsonBody<S extends z.ZodType>(schema: S, body: string, message?: Message): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new MessageParseError('body is not JSON', { messageId: message?.MessageId });
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0]!;
    const path = first.path.join('.') || '(body)';
    const more = r.error.issues.length > 1 ? ` (+${r.error.issues.length - 1} more)` : '';
    throw new MessageParseError(`${path}: ${first.message}${more}`, { messageId: message?.MessageId, path });
  }
  return r.data;
}
