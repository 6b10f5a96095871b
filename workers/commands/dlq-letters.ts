/**
 * Dead letters as operators handle them (`payfleet dlq`, and the `npm start` summary): read the
 * failure attributes CONTRACT.md §6 puts on every letter, list a FIFO DLQ without hiding it from
 * anyone, and put letters back on their source queue.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type Message,
  type MessageAttributeValue,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';

/** Code shown for a letter SQS moved itself (RedrivePolicy maxReceiveCount): no worker wrote a reason. */
export const MOVED_BY_SQS = 'MAX_RECEIVE_COUNT_EXCEEDED';

/** One dead letter as operators see it. */
export interface DeadLetterView {
  readonly messageId: string;
  readonly code: string;
  readonly detail: string;
  readonly worker: string | null;
  readonly attempts: number | null;
  readonly failedAt: string | null;
  readonly sourceQueue: string | null;
  /** The source MessageGroupId: what redrive sends with. */
  readonly groupId: string;
  /** True when SQS moved it (no payfleet-* attributes): a worker crashed or timed out on it repeatedly. */
  readonly movedBySqs: boolean;
  /** When the letter was put on the DLQ (SentTimestamp). */
  readonly sentAt: string | null;
  readonly bodyBytes: number;
}

/** A received dead letter: its view, its body, and what is needed to release or delete it. */
export interface HeldLetter {
  readonly view: DeadLetterView;
  readonly body: string;
  readonly message: Message;
}

const str = (a: MessageAttributeValue | undefined): string | undefined => a?.StringValue;

/** The operator's view of a DLQ message. */
export function toDeadLetterView(m: Message): DeadLetterView {
  const attrs = m.MessageAttributes ?? {};
  const code = str(attrs[DLQ_ATTRIBUTES.code]);
  const movedBySqs = code === undefined;
  const attempts = str(attrs[DLQ_ATTRIBUTES.attempts]);
  const sent = m.Attributes?.SentTimestamp;
  return {
    messageId: m.MessageId ?? '',
    code: code ?? MOVED_BY_SQS,
    detail: movedBySqs
      ? 'moved by SQS after maxReceiveCount receives: no worker recorded a reason (it crashed or timed out on this message each time)'
      : (str(attrs[DLQ_ATTRIBUTES.detail]) ?? ''),
    worker: str(attrs[DLQ_ATTRIBUTES.worker]) ?? null,
    attempts: attempts !== undefined ? Number(attempts) : null,
    failedAt: str(attrs[DLQ_ATTRIBUTES.failedAt]) ?? null,
    sourceQueue: str(attrs[DLQ_ATTRIBUTES.sourceQueue]) ?? null,
    groupId: str(attrs[DLQ_ATTRIBUTES.groupId]) ?? m.Attributes?.MessageGroupId ?? '',
    movedBySqs,
    sentAt: sent ? new Date(Number(sent)).toISOString() : null,
    bodyBytes: Buffer.byteLength(m.Body ?? '', 'utf8'),
  };
}

/**
 * Receive every visible letter of a DLQ (up to `limit`), holding each invisible for
 * `visibilitySec` so one pass sees each letter once. `onBatch` may act on letters as they arrive
 * (redrive, purge) and returns the ones it is done with; the caller must {@link releaseLetters}
 * the rest, so listing never hides letters from anyone for longer than the pass.
 *
 * Stops after an empty short poll confirmed by a 1 s long poll (SQS short polls sample servers).
 * Letters SQS itself moved share their source message group; FIFO hands out a group's next letter
 * only once the ones before it are deleted, so a listing shows the first of each such group
 * (callers report the rest from the queue's depth), while redrive and purge, which delete as they
 * go, reach them all.
 */
export async function receiveLetters(
  sqs: SQSClient,
  queueUrl: string,
  options: {
    readonly limit?: number;
    readonly visibilitySec?: number;
    readonly onBatch?: (batch: HeldLetter[]) => Promise<HeldLetter[]>;
    readonly stopWhen?: (held: ReadonlyMap<string, HeldLetter>) => boolean;
  } = {},
): Promise<HeldLetter[]> {
  const held = new Map<string, HeldLetter>();
  const limit = options.limit ?? 1000;
  let seen = 0;
  let confirm = false;
  while (seen < limit) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: Math.min(10, limit - seen),
        WaitTimeSeconds: confirm ? 1 : 0,
        VisibilityTimeout: options.visibilitySec ?? 30,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const messages = out.Messages ?? [];
    if (messages.length === 0) {
      if (confirm) break;
      confirm = true;
      continue;
    }
    confirm = false;
    const batch: HeldLetter[] = [];
    for (const m of messages) {
      const id = m.MessageId ?? '';
      // Seen before in this pass (its visibility ran out): keep the newest receipt handle only.
      if (!held.has(id)) seen++;
      const letter = { view: toDeadLetterView(m), body: m.Body ?? '', message: m };
      held.set(id, letter);
      batch.push(letter);
    }
    if (options.onBatch) {
      const done = await options.onBatch(batch);
      for (const d of done) held.delete(d.view.messageId);
    }
    if (options.stopWhen?.(held)) break;
  }
  return [...held.values()];
}

/** Make letters visible again at once (ChangeMessageVisibility 0), 10 per call. Best effort. */
export async function releaseLetters(sqs: SQSClient, queueUrl: string, letters: readonly HeldLetter[]): Promise<void> {
  for (let i = 0; i < letters.length; i += 10) {
    const chunk = letters.slice(i, i + 10);
    try {
      await sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: queueUrl,
          Entries: chunk.map((l, j) => ({ Id: String(j), ReceiptHandle: l.message.ReceiptHandle!, VisibilityTimeout: 0 })),
        }),
      );
    } catch {
      // They become visible on their own when the short visibility runs out.
    }
  }
}

/** The deduplication id of a redriven letter: never the original's (that one may still be remembered by SQS). */
export const redriveDedupId = (dlqMessageId: string): string => `redrive-${dlqMessageId}`;

/**
 * Put one letter back on its source queue: the body byte for byte, the source message group, a
 * deduplication id derived from the DLQ message id (a repeated redrive of the same letter within
 * SQS's five-minute window is dropped by SQS), and the original's own attributes minus the
 * payfleet-* failure ones. The DLQ copy is deleted only after the send succeeded.
 */
export async function redriveLetter(
  sqs: SQSClient,
  urls: { source: string; dlq: string },
  letter: HeldLetter,
): Promise<{ newMessageId: string; dedupId: string }> {
  const own = Object.fromEntries(
    Object.entries(letter.message.MessageAttributes ?? {}).filter(([k]) => !k.startsWith('payfleet-')),
  );
  const dedupId = redriveDedupId(letter.view.messageId);
  const out = await sqs.send(
    new SendMessageCommand({
      QueueUrl: urls.source,
      MessageBody: letter.body,
      MessageGroupId: letter.view.groupId || letter.view.messageId,
      MessageDeduplicationId: dedupId,
      ...(Object.keys(own).length > 0 ? { MessageAttributes: own } : {}),
    }),
  );
  // Ordering matters: delete only after SQS accepted the copy, so a failure leaves the letter in the DLQ.
  await sqs.send(new DeleteMessageCommand({ QueueUrl: urls.dlq, ReceiptHandle: letter.message.ReceiptHandle! }));
  return { newMessageId: out.MessageId ?? '', dedupId };
}

/** Visible plus in-flight messages of a queue (SQS's approximate counts). */
export async function approximateDepth(sqs: SQSClient, url: string): Promise<number> {
  const a = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return (
    Number(a.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
  );
}
