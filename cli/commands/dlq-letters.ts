/**
 * Dead letters as operators handle them (`payfleet dlq`, and the `npm start` summary): read the
 * failure attributes a worker puts on every letter, read a FIFO DLQ without hiding it from anyone
 * for longer than a pass, and put letters back on their source queue.
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
import { DLQ_ATTRIBUTES, lineageAttributes, readLineage } from '../../shared/core/dlq.js';

/** Code shown for a letter SQS moved itself (RedrivePolicy maxReceiveCount): no worker wrote a reason. */
export const MOVED_BY_SQS = 'MAX_RECEIVE_COUNT_EXCEEDED';

/** One dead letter as operators see it. */
export interface DeadLetterView {
  /** The DLQ message id. */
  readonly messageId: string;
  /**
   * The id of the source-queue message the worker received and logged (`messageId` in its log
   * lines). For a letter SQS moved, its own id (SQS keeps the id when it moves a message).
   */
  readonly sourceMessageId: string | null;
  readonly code: string;
  readonly detail: string;
  readonly worker: string | null;
  readonly attempts: number | null;
  readonly failedAt: string | null;
  readonly sourceQueue: string | null;
  /** The source MessageGroupId: what redrive sends with. */
  readonly groupId: string;
  /** True when SQS moved it (no payfleet-* failure attributes): a worker crashed or timed out on it repeatedly. */
  readonly movedBySqs: boolean;
  /** When the letter was put on the DLQ (SentTimestamp, the queue's own clock). */
  readonly sentAt: string | null;
  readonly bodyBytes: number;
  /** How many times this letter's message has been redriven before it failed again (0: never). */
  readonly redrives: number;
  /** Earlier ids of this letter, oldest first: first source message id, its DLQ id, the next source id … */
  readonly lineage: readonly string[];
  /** The redrive run that last sent its message back (null: never redriven). */
  readonly redriveRun: string | null;
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
  const { redrives, lineage } = readLineage(attrs);
  return {
    messageId: m.MessageId ?? '',
    // Letters written before the attribute existed are grouped by their source message id.
    sourceMessageId:
      str(attrs[DLQ_ATTRIBUTES.sourceMessageId]) ?? (movedBySqs ? m.MessageId : m.Attributes?.MessageGroupId) ?? null,
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
    redrives,
    lineage: lineage.ids,
    redriveRun: lineage.run,
  };
}

/** How an id given on the command line names a letter, best match first; null when it does not. */
export function matchId(v: DeadLetterView, id: string): 'dlq' | 'source' | 'lineage' | null {
  if (v.messageId === id) return 'dlq';
  if (v.sourceMessageId === id) return 'source';
  return v.lineage.includes(id) ? 'lineage' : null;
}

/** What `--id`, `--code` and `--since` choose. */
export interface LetterFilter {
  /** Any id of the letter: DLQ message id, source message id, or an earlier id of its lineage. */
  readonly ids?: readonly string[];
  readonly codes?: readonly string[];
  /** Failed (or, for letters SQS moved, arrived) at or after this instant. */
  readonly sinceMs?: number;
}

export const isFiltered = (f: LetterFilter): boolean => f.ids !== undefined || f.codes !== undefined || f.sinceMs !== undefined;

/** When the letter failed: the worker's failed-at, else when SQS put it on the DLQ. */
export const failedTime = (v: DeadLetterView): string => v.failedAt ?? v.sentAt ?? '';

export function matchesFilter(f: LetterFilter, v: DeadLetterView): boolean {
  if (f.ids && !f.ids.some((id) => matchId(v, id))) return false;
  if (f.codes && !f.codes.includes(v.code)) return false;
  if (f.sinceMs !== undefined) {
    const t = Date.parse(failedTime(v));
    if (!(t >= f.sinceMs)) return false;
  }
  return true;
}

/** Listing order: oldest failure first, ties by DLQ message id (stable across runs, so pages do not overlap). */
export function byFailure(a: DeadLetterView, b: DeadLetterView): number {
  return failedTime(a).localeCompare(failedTime(b)) || a.messageId.localeCompare(b.messageId);
}

/** A page cursor: the sort key of the last letter shown. Valid even once that letter is gone. */
export const cursorOf = (v: DeadLetterView): string => `${failedTime(v)}~${v.messageId}`;

/** True for letters that come after `cursor` in listing order. */
export function isAfterCursor(v: DeadLetterView, cursor: string): boolean {
  const cut = cursor.indexOf('~');
  const time = cursor.slice(0, cut);
  const id = cursor.slice(cut + 1);
  return failedTime(v).localeCompare(time) > 0 || (failedTime(v) === time && v.messageId.localeCompare(id) > 0);
}

/** Count letters by code, most frequent first: "2 UNKNOWN_PROCESSOR, 1 TOKEN_EXPIRED". */
export function countByCode(views: readonly DeadLetterView[]): { code: string; count: number }[] {
  const m = new Map<string, number>();
  for (const v of views) m.set(v.code, (m.get(v.code) ?? 0) + 1);
  return [...m].map(([code, count]) => ({ code, count })).sort((a, b) => b.count - a.count || a.code.localeCompare(b.code));
}

export const describeCounts = (counts: readonly { code: string; count: number }[]): string =>
  counts.map((c) => `${c.count} ${c.code}`).join(', ');

interface Hold {
  letter: HeldLetter;
  /** When our hold on it runs out (local clock). */
  visibleAtMs: number;
}

/**
 * One pass over a DLQ. Each letter received is held invisible (`visibilitySec`, extended while the
 * pass lasts, so a pass longer than the visibility does not meet its own letters again) and handed
 * to the caller once; the caller deletes it ({@link forget}) or the pass gives it back at the end
 * ({@link releaseAll}, visibility 0), so reading hides letters from no one for longer than the pass.
 *
 *   receive ─ hold (60 s) ─ keep-alive at half-time ─ … ─ delete (acted on) | release (end of pass)
 *
 * The pass is over after a receive that brought nothing the caller counts (`counts`: every new
 * letter for a listing; only snapshot letters for redrive and purge) confirmed by a 1 s long poll
 * that brought nothing either (SQS short polls sample servers). So a stream of letters arriving
 * while a redrive runs cannot keep it going.
 *
 * Letters SQS moved itself share their source message group; FIFO hands out a group's next letter
 * only once the one before it is deleted, so a pass that only reads sees the first of each such
 * group, while redrive and purge, which delete as they go, reach them all.
 */
export class LetterReader {
  private readonly holds = new Map<string, Hold>();
  private readonly seen = new Set<string>();
  private confirming = false;
  private exhausted = false;

  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly visibilitySec = 30,
  ) {}

  /** Letters held now (received, not deleted, not released). */
  get held(): number {
    return this.holds.size;
  }

  /** Distinct letters received in this pass. */
  get received(): number {
    return this.seen.size;
  }

  /**
   * One receive of at most `want` letters (1-10). Returns the letters seen for the first time in
   * this pass (possibly none), or null once the pass is over.
   */
  async next(want = 10, counts: (l: HeldLetter) => boolean = () => true): Promise<HeldLetter[] | null> {
    if (this.exhausted) return null;
    await this.keepAlive();
    const out = await this.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queueUrl,
        MaxNumberOfMessages: Math.max(1, Math.min(10, want)),
        WaitTimeSeconds: this.confirming ? 1 : 0,
        VisibilityTimeout: this.visibilitySec,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const visibleAtMs = Date.now() + this.visibilitySec * 1000;
    const fresh: HeldLetter[] = [];
    for (const m of out.Messages ?? []) {
      const id = m.MessageId ?? '';
      const letter = { view: toDeadLetterView(m), body: m.Body ?? '', message: m };
      if (this.seen.has(id)) {
        // Its hold ran out and it came back: keep the newest receipt handle, never hand it out twice.
        if (this.holds.has(id)) this.holds.set(id, { letter, visibleAtMs });
        continue;
      }
      this.seen.add(id);
      this.holds.set(id, { letter, visibleAtMs });
      fresh.push(letter);
    }
    if (fresh.some(counts)) this.confirming = false;
    else if (this.confirming) this.exhausted = true;
    else this.confirming = true;
    return fresh;
  }

  /** Extend every hold that would run out within half the visibility. Best effort: a lapsed hold only means the letter is seen (and skipped) again. */
  async keepAlive(): Promise<void> {
    const now = Date.now();
    const due = [...this.holds.values()].filter((h) => h.visibleAtMs - now < (this.visibilitySec * 1000) / 2);
    await this.changeVisibility(due, this.visibilitySec);
    for (const h of due) h.visibleAtMs = now + this.visibilitySec * 1000;
  }

  /** The caller deleted this letter: stop holding it (it is still never handed out again). */
  forget(letter: HeldLetter): void {
    this.holds.delete(letter.view.messageId);
  }

  /** Make every held letter visible again at once (ChangeMessageVisibility 0). Best effort. */
  async releaseAll(): Promise<void> {
    const all = [...this.holds.values()];
    this.holds.clear();
    await this.changeVisibility(all, 0);
  }

  private async changeVisibility(holds: readonly Hold[], visibilitySec: number): Promise<void> {
    for (let i = 0; i < holds.length; i += 10) {
      const chunk = holds.slice(i, i + 10);
      try {
        await this.sqs.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: this.queueUrl,
            Entries: chunk.map((h, j) => ({
              Id: String(j),
              ReceiptHandle: h.letter.message.ReceiptHandle!,
              VisibilityTimeout: visibilitySec,
            })),
          }),
        );
      } catch {
        // Released letters come back on their own when the hold runs out.
      }
    }
  }
}

/**
 * Every visible letter of a DLQ, held for one pass; the caller must release them
 * ({@link releaseLetters}). Used by the `npm start` summary; the commands use {@link LetterReader}.
 */
export async function receiveLetters(sqs: SQSClient, queueUrl: string): Promise<HeldLetter[]> {
  const reader = new LetterReader(sqs, queueUrl, 30);
  const all: HeldLetter[] = [];
  for (let batch = await reader.next(); batch !== null; batch = await reader.next()) all.push(...batch);
  return all;
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

/** A redrive whose send went through but whose delete did not: the letter is on both queues. */
export class DeleteAfterSendError extends Error {
  override readonly name = 'DeleteAfterSendError';
  constructor(
    readonly newMessageId: string,
    options: { cause: unknown },
  ) {
    super(
      `sent as ${newMessageId}, but the DLQ copy could not be deleted (${(options.cause as Error).name}); it stays in the DLQ, and a redrive of it within 5 minutes is dropped by SQS as a duplicate`,
      options,
    );
  }
}

/**
 * Put one letter back on its source queue: the body byte for byte, the source message group, a
 * deduplication id derived from the DLQ message id (a repeated redrive of the same letter within
 * SQS's five-minute window is dropped by SQS), the original's own attributes minus the payfleet-*
 * failure ones, and the lineage: `payfleet-redrives` = the letter's count + 1 and its ids, with
 * `runId`, so a worker that dead-letters it again carries them onto the new letter.
 * The DLQ copy is deleted only after the send succeeded.
 */
export async function redriveLetter(
  sqs: SQSClient,
  urls: { source: string; dlq: string },
  letter: HeldLetter,
  runId: string,
): Promise<{ newMessageId: string; dedupId: string; redrives: number }> {
  const v = letter.view;
  const own = Object.fromEntries(
    Object.entries(letter.message.MessageAttributes ?? {}).filter(([k]) => !k.startsWith('payfleet-')),
  );
  const earlier = [
    ...v.lineage,
    ...(v.sourceMessageId && v.sourceMessageId !== v.messageId ? [v.sourceMessageId] : []),
    v.messageId,
  ];
  const redrives = v.redrives + 1;
  const dedupId = redriveDedupId(v.messageId);
  const out = await sqs.send(
    new SendMessageCommand({
      QueueUrl: urls.source,
      MessageBody: letter.body,
      MessageGroupId: v.groupId || v.messageId,
      MessageDeduplicationId: dedupId,
      MessageAttributes: { ...own, ...lineageAttributes(redrives, { ids: earlier, run: runId }) },
    }),
  );
  const newMessageId = out.MessageId ?? '';
  // Ordering matters: delete only after SQS accepted the copy, so a failure leaves the letter in the DLQ.
  try {
    await sqs.send(new DeleteMessageCommand({ QueueUrl: urls.dlq, ReceiptHandle: letter.message.ReceiptHandle! }));
  } catch (err) {
    throw new DeleteAfterSendError(newMessageId, { cause: err });
  }
  return { newMessageId, dedupId, redrives };
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
