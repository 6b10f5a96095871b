import { SendMessageCommand, type Message, type MessageAttributeValue, type SQSClient } from '@aws-sdk/client-sqs';
import { maskPans } from '../log/redact.js';

/**
 * Message attributes every dead letter carries. SQS allows at most 10 message attributes on a
 * message, and a letter carries exactly these 10, so lineage shares one attribute.
 */
export const DLQ_ATTRIBUTES = {
  code: 'payfleet-error-code',
  detail: 'payfleet-error-detail',
  sourceQueue: 'payfleet-source-queue',
  worker: 'payfleet-worker',
  attempts: 'payfleet-attempts',
  failedAt: 'payfleet-failed-at',
  /** The source MessageGroupId, so a redrive restores it (the DLQ copy uses its own group). */
  groupId: 'payfleet-message-group-id',
  /** The id of the source-queue message the worker received: the `messageId` of its log lines. */
  sourceMessageId: 'payfleet-source-message-id',
  /**
   * How many times this letter's message has been redriven (absent: never). Redrive puts n + 1 on
   * the message it sends back; a worker that dead-letters that message copies it unchanged.
   */
  redrives: 'payfleet-redrives',
  /** Earlier ids of this letter and the redrive run that sent it back ({@link Lineage}, as JSON). */
  lineage: 'payfleet-lineage',
} as const;

/**
 * Where a letter came from across redrives. A letter redriven twice looks like this:
 *
 *   source m1 ─worker─▶ DLQ d1 ─redrive run r1─▶ source m2 ─worker─▶ DLQ d2 ─run r2─▶ source m3 ─▶ DLQ d3
 *   letter d3: source message id m3, redrives 2, lineage { ids: [m1, d1, m2, d2], run: r2 }
 *
 * so `dlq show` finds d3 by any id a log line or an earlier redrive printed, and run r2 can tell
 * that d3 is its own re-failure (never to be redriven again by r2).
 */
export interface Lineage {
  /** Earlier message ids, oldest first: the first source message id, its DLQ id, the next source id … */
  readonly ids: readonly string[];
  /** The redrive run that last sent this message back to its source queue. */
  readonly run: string | null;
}

/** Ids kept in a lineage: the first two (where it all started) and the most recent ones. */
const MAX_LINEAGE_IDS = 40;
const SQS_ID = /^[\x21-\x7e]{1,128}$/;

/** Redrive count and lineage from a message's attributes; anything malformed reads as absent. */
export function readLineage(attrs: Record<string, MessageAttributeValue> | undefined): { redrives: number; lineage: Lineage } {
  const n = Number(attrs?.[DLQ_ATTRIBUTES.redrives]?.StringValue);
  const redrives = Number.isSafeInteger(n) && n > 0 ? n : 0;
  let ids: string[] = [];
  let run: string | null = null;
  try {
    const parsed = JSON.parse(attrs?.[DLQ_ATTRIBUTES.lineage]?.StringValue ?? 'null') as { ids?: unknown; run?: unknown } | null;
    if (Array.isArray(parsed?.ids)) ids = parsed.ids.filter((i): i is string => typeof i === 'string' && SQS_ID.test(i));
    if (typeof parsed?.run === 'string' && SQS_ID.test(parsed.run)) run = parsed.run;
  } catch {
    // Not ours (upstream may send any attribute): no lineage.
  }
  return { redrives, lineage: { ids: capIds(ids), run } };
}

function capIds(ids: readonly string[]): string[] {
  return ids.length <= MAX_LINEAGE_IDS ? [...ids] : [...ids.slice(0, 2), ...ids.slice(ids.length - (MAX_LINEAGE_IDS - 2))];
}

/** The attributes that carry a redrive count and lineage (none when there is nothing to carry). */
export function lineageAttributes(redrives: number, lineage: Lineage): Record<string, MessageAttributeValue> {
  if (redrives <= 0 && lineage.ids.length === 0 && lineage.run === null) return {};
  return {
    [DLQ_ATTRIBUTES.redrives]: { DataType: 'Number', StringValue: String(redrives) },
    [DLQ_ATTRIBUTES.lineage]: {
      DataType: 'String',
      StringValue: JSON.stringify({ ids: capIds(lineage.ids), run: lineage.run }),
    },
  };
}

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
 *
 * A message that was redriven arrives with `payfleet-redrives` and `payfleet-lineage`; they are
 * copied onto the new letter as they are (re-encoded, never incremented here: redrive counts), so
 * the count and the chain of ids survive any number of round trips.
 */
export async function sendToDlq(
  sqs: SQSClient,
  params: { dlqUrl: string; sourceQueue: string; worker: string; message: Message; letter: DeadLetter; now?: Date },
): Promise<{ dlqMessageId: string; redrives: number }> {
  const { message, letter } = params;
  const str = (v: string) => ({ DataType: 'String', StringValue: v });
  const carried = readLineage(message.MessageAttributes);
  const out = await sqs.send(
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
        ...(message.MessageId ? { [DLQ_ATTRIBUTES.sourceMessageId]: str(message.MessageId) } : {}),
        ...lineageAttributes(carried.redrives, carried.lineage),
      },
    }),
  );
  return { dlqMessageId: out.MessageId ?? '', redrives: carried.redrives };
}
