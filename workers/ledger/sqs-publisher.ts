/**
 * LedgerPublisher on ledger-events.fifo: one SendMessageBatch per call, MessageGroupId =
 * resource_external_id, MessageDeduplicationId = event_id (docs/contract.md §1), body = §5.
 *
 * Every entry's outcome is read from the response: `Successful` entries are in the queue (a
 * resend SQS de-duplicated is reported successful too, and that copy is in the queue already);
 * `Failed` entries are not. An entry the response names in neither list is treated as failed:
 * it stays pending and is sent again, which costs at most a duplicate the consumer drops.
 */
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { LedgerEntry, LedgerPublisher, PublishResult } from './ports.js';

/** SQS's limit on entries per SendMessageBatch. */
export const SQS_MAX_BATCH = 10;

export function createSqsLedgerPublisher(options: {
  sqs: Pick<SQSClient, 'send'>;
  queueUrl: () => Promise<string>;
}): LedgerPublisher {
  return {
    async publish(entries, signal): Promise<PublishResult> {
      if (entries.length === 0) return { sent: [], failed: [] };
      if (entries.length > SQS_MAX_BATCH)
        throw new RangeError(`at most ${SQS_MAX_BATCH} entries per SendMessageBatch, got ${entries.length}`);
      const byId = new Map<string, LedgerEntry>(entries.map((e, i) => [`e${i}`, e]));
      const out = await options.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: await options.queueUrl(),
          Entries: [...byId].map(([id, e]) => ({
            Id: id,
            MessageBody: JSON.stringify(e.body),
            MessageGroupId: e.groupId,
            MessageDeduplicationId: e.eventId,
          })),
        }),
        signal ? { abortSignal: signal } : {},
      );
      const sent: string[] = [];
      const failed: { eventId: string; code: string; message: string; senderFault: boolean }[] = [];
      const answered = new Set<string>();
      for (const s of out.Successful ?? []) {
        const e = s.Id ? byId.get(s.Id) : undefined;
        if (!e || answered.has(s.Id!)) continue;
        answered.add(s.Id!);
        sent.push(e.eventId);
      }
      for (const f of out.Failed ?? []) {
        const e = f.Id ? byId.get(f.Id) : undefined;
        if (!e || answered.has(f.Id!)) continue;
        answered.add(f.Id!);
        failed.push({
          eventId: e.eventId,
          code: f.Code ?? 'UNKNOWN',
          message: f.Message ?? '',
          senderFault: f.SenderFault === true,
        });
      }
      for (const [id, e] of byId) {
        if (!answered.has(id))
          failed.push({
            eventId: e.eventId,
            code: 'NO_RESULT',
            message: 'entry missing from the SendMessageBatch response',
            senderFault: false,
          });
      }
      return { sent, failed };
    },
  };
}
