import { SendMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import { maskPans } from '../log/redact.js';

/** Message attributes every dead letter carries (CONTRACT.md §6). */
export const DLQ_ATTRIBUTES = {
  code: 'payfleet-error-code',
  detail: 'payfleet-error-detail',
  sourceQueue: 'payfleet-source-queue',
  worker: 'payfleet-worker',
  attempts: 'payfleet-attempts',
  failedAt: 'payfleet-failed-at',
  /** The source MessageGroupId, so a redrive restores it (the DLQ copy uses its own group). */
  groupId: 'payfleet-message-group-id',
} as const;

export interface DeadLetter {
  readonly code: string;
  readonly detail: string;
  readonly attempts: number;
}

/**
 * Send the original message to the DLQ, body byte for byte, with the failure attached as
 * attributes. The deduplication id is the source message id, so a worker that dies between this
 * send and the source delete does not leave two dead letters for one message.
 * Each dead letter is its own message group (the source message id): in a FIFO DLQ a shared
 * group would hide every letter behind the first until it is deleted, so operators could not list
 * them. The source group travels in `payfleet-message-group-id` and redrive puts it back.
 * The detail is masked and cut to 1 KiB: it is read by people, and must never carry card data.
 */
export async function sendToDlq(
  sqs: SQSClient,
  params: { dlqUrl: string; sourceQueue: string; worker: string; message: Message; letter: DeadLetter; now?: Date },
): Promise<void> {
  const { message, letter } = params;
  const str = (v: string) => ({ DataType: 'String', StringValue: v });
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: params.dlqUrl,
      MessageBody: message.Body ?? '',
      MessageGroupId: message.MessageId ?? message.Attributes?.MessageGroupId ?? 'payfleet-dlq',
      MessageDeduplicationId: message.MessageId ?? undefined,
      MessageAttributes: {
        [DLQ_ATTRIBUTES.code]: str(letter.code),
        [DLQ_ATTRIBUTES.detail]: str(maskPans(letter.detail).slice(0, 1024) || '-'),
        [DLQ_ATTRIBUTES.sourceQueue]: str(params.sourceQueue),
        [DLQ_ATTRIBUTES.worker]: str(params.worker),
        [DLQ_ATTRIBUTES.attempts]: { DataType: 'Number', StringValue: String(letter.attempts) },
        [DLQ_ATTRIBUTES.failedAt]: str((params.now ?? new Date()).toISOString()),
        ...(message.Attributes?.MessageGroupId ? { [DLQ_ATTRIBUTES.groupId]: str(message.Attributes.MessageGroupId) } : {}),
      },
    }),
  );
}
