import type { Message } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { parseJsonBody } from '../../shared/core/parse.js';

/** `CaptureRequested` (docs/contract.md §2). Unknown fields are ignored. */
export const CaptureRequested = z.object({
  type: z.literal('CaptureRequested'),
  captureRequestId: z.uuid(),
  chargeId: z.string().min(1).max(255),
  requestedAt: z.iso.datetime({ offset: true }),
});
export type CaptureRequested = z.infer<typeof CaptureRequested>;

export function parseCaptureRequested(body: string, message?: Message): CaptureRequested {
  return parseJsonBody(CaptureRequested, body, message);
}
