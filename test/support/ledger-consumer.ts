/**
 * The reference Ledger consumer: test tooling, and the oracle of every fleet-wide test.
 *
 * It drains ledger-events.fifo the way the Ledger would (receive, process in order, delete),
 * validates every body against docs/contract.md §5 with its own zod schema (written from the contract
 * text, sharing no code with the emitter it judges), checks MessageGroupId = resource_external_id
 * and MessageDeduplicationId = event_id, de-duplicates by event_id, and checks per resource that
 * `sequence` arrives 1, 2, 3, ... with no gap and no reordering.
 *
 *   arrivals for R:  1  2  2(dup)  4  3      -> duplicates [2], reorders [3 after 4]
 *   at report time:  R has 1 2 3 4, highest 4 -> no gaps
 *   arrivals for S:  1  3                    -> gaps: S is missing 2
 *
 * A duplicate is an event_id seen before: allowed (the fleet may deliver twice), counted, and not
 * a reorder even if it arrives after later sequences (a resend after a crash does exactly that).
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';

/** ISO-8601 with exactly six fractional digits (microseconds) and a zone. */
const MICROS_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(?:Z|[+-]\d{2}:\d{2})$/;
const SCREAMING_SNAKE = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/;

/** docs/contract.md §5, strictly: the fleet must send exactly these fields. */
export const LedgerEventBody = z
  .object({
    event_id: z.string().min(1),
    resource_type: z.enum(['payment', 'refund', 'payout']),
    resource_external_id: z.string().min(1),
    parent_resource_external_id: z.string().min(1).optional(),
    sequence: z.number().int().min(1),
    event_type: z.string().regex(SCREAMING_SNAKE, { error: 'must be SCREAMING_SNAKE_CASE' }),
    timestamp: z
      .string()
      .regex(MICROS_TIMESTAMP, { error: 'must be ISO-8601 with microseconds' })
      .refine((v) => !Number.isNaN(Date.parse(v)), { error: 'must be a real instant' }),
    gateway_account_id: z.string().min(1).optional(),
    live: z.boolean(),
    event_details: z.record(z.string(), z.unknown()),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.resource_type === 'payment' && v.gateway_account_id === undefined) {
      ctx.addIssue({ code: 'custom', path: ['gateway_account_id'], message: 'is required for payments' });
    }
    if ((v.resource_type === 'refund') !== (v.parent_resource_external_id !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['parent_resource_external_id'], message: 'is required for refunds and only for them' });
    }
  });
export type LedgerEventBody = z.output<typeof LedgerEventBody>;

export interface RecordedEvent {
  readonly body: LedgerEventBody;
  readonly raw: string;
  readonly messageId: string;
  /** When this consumer received it (epoch ms). */
  readonly receivedAtMs: number;
}

export interface ConsumerReport {
  /** Messages received, duplicates and invalid ones included. */
  readonly received: number;
  /** Valid events of resources outside the consumer's scope (ignored). */
  readonly outOfScope: number;
  /** Distinct event_ids accepted. */
  readonly unique: number;
  readonly resources: number;
  readonly duplicates: readonly { readonly eventId: string; readonly resourceId: string; readonly sequence: number }[];
  readonly invalid: readonly { readonly messageId: string; readonly problems: readonly string[] }[];
  /** Attribute/body disagreements: group or dedup id not matching the body, one event_id with two bodies. */
  readonly mismatches: readonly string[];
  /** Per resource, sequences missing below the highest one seen. */
  readonly gaps: readonly { readonly resourceId: string; readonly missing: readonly number[] }[];
  /** New events that arrived after a higher sequence of their resource. */
  readonly reorders: readonly { readonly resourceId: string; readonly sequence: number; readonly after: number }[];
}

export class LedgerConsumer {
  private readonly unique: RecordedEvent[] = [];
  private readonly byEventId = new Map<string, RecordedEvent>();
  private readonly byResource = new Map<string, { highest: number; seen: Set<number> }>();
  private received = 0;
  private readonly duplicates: { eventId: string; resourceId: string; sequence: number }[] = [];
  private readonly invalid: { messageId: string; problems: string[] }[] = [];
  private readonly mismatches: string[] = [];
  private readonly reorders: { resourceId: string; sequence: number; after: number }[] = [];

  private outOfScope = 0;

  constructor(
    private readonly options: {
      readonly sqs?: SQSClient;
      readonly queueUrl?: string;
      readonly visibilityTimeoutSec?: number;
      /**
       * Resources this consumer judges (tests sharing one queue); valid events of other resources
       * are counted in `outOfScope` and otherwise ignored. @default every resource
       */
      readonly scope?: (resourceId: string) => boolean;
    } = {},
  ) {}

  /** Process one delivered message (also usable without SQS, for the oracle's own tests). */
  accept(raw: string, attrs: { messageId?: string; groupId?: string; dedupId?: string } = {}): void {
    this.received++;
    const messageId = attrs.messageId ?? `local-${this.received}`;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      this.invalid.push({ messageId, problems: ['not JSON'] });
      return;
    }
    const parsed = LedgerEventBody.safeParse(json);
    if (!parsed.success) {
      this.invalid.push({ messageId, problems: parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`) });
      return;
    }
    const body = parsed.data;
    if (this.options.scope && !this.options.scope(body.resource_external_id)) {
      this.outOfScope++;
      return;
    }
    if (attrs.groupId !== undefined && attrs.groupId !== body.resource_external_id) {
      this.mismatches.push(
        `${body.event_id}: MessageGroupId ${attrs.groupId} != resource_external_id ${body.resource_external_id}`,
      );
    }
    if (attrs.dedupId !== undefined && attrs.dedupId !== body.event_id) {
      this.mismatches.push(`${body.event_id}: MessageDeduplicationId ${attrs.dedupId} != event_id`);
    }
    const earlier = this.byEventId.get(body.event_id);
    if (earlier) {
      this.duplicates.push({ eventId: body.event_id, resourceId: body.resource_external_id, sequence: body.sequence });
      if (canonical(earlier.body) !== canonical(body))
        this.mismatches.push(`${body.event_id}: delivered twice with different bodies`);
      return;
    }
    const recorded = { body, raw, messageId, receivedAtMs: Date.now() };
    this.byEventId.set(body.event_id, recorded);
    this.unique.push(recorded);
    const state = this.byResource.get(body.resource_external_id) ?? { highest: 0, seen: new Set<number>() };
    this.byResource.set(body.resource_external_id, state);
    if (state.seen.has(body.sequence)) {
      this.mismatches.push(`${body.resource_external_id}#${body.sequence}: two event_ids for one sequence`);
      return;
    }
    state.seen.add(body.sequence);
    if (body.sequence < state.highest)
      this.reorders.push({ resourceId: body.resource_external_id, sequence: body.sequence, after: state.highest });
    else state.highest = body.sequence;
  }

  /** One receive (≤ 10 messages), processed in delivery order, then deleted. Returns how many. */
  async pollOnce(waitSec = 0): Promise<number> {
    const { sqs, queueUrl } = this.options;
    if (!sqs || !queueUrl) throw new Error('LedgerConsumer: no sqs/queueUrl to poll');
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: waitSec,
        VisibilityTimeout: this.options.visibilityTimeoutSec ?? 30,
        MessageSystemAttributeNames: ['MessageGroupId', 'MessageDeduplicationId'],
      }),
    );
    const messages: Message[] = out.Messages ?? [];
    for (const m of messages) {
      this.accept(m.Body ?? '', {
        messageId: m.MessageId ?? '',
        ...(m.Attributes?.MessageGroupId !== undefined ? { groupId: m.Attributes.MessageGroupId } : {}),
        ...(m.Attributes?.MessageDeduplicationId !== undefined ? { dedupId: m.Attributes.MessageDeduplicationId } : {}),
      });
    }
    if (messages.length > 0) {
      await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
        }),
      );
    }
    return messages.length;
  }

  /** Poll until `done()` holds, then keep polling until the queue stays empty for `idleMs`. */
  async drainUntil(done: (c: LedgerConsumer) => boolean, options: { timeoutMs?: number; idleMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    while (!done(this)) {
      if (Date.now() > deadline) {
        throw new Error(`ledger consumer: timed out with ${this.unique.length} unique events; ${JSON.stringify(this.summary())}`);
      }
      if ((await this.pollOnce(0)) === 0) await new Promise((r) => setTimeout(r, 50));
    }
    await this.drain(options.idleMs ?? 300);
  }

  /** Poll until nothing arrives for `idleMs`. */
  async drain(idleMs = 500): Promise<void> {
    let idleSince = Date.now();
    while (Date.now() - idleSince < idleMs) {
      if ((await this.pollOnce(0)) > 0) idleSince = Date.now();
      else await new Promise((r) => setTimeout(r, 50));
    }
  }

  get uniqueCount(): number {
    return this.unique.length;
  }

  /** Unique events in arrival order. */
  events(): readonly RecordedEvent[] {
    return this.unique;
  }

  /** A resource's sequences in arrival order (duplicates dropped). */
  sequences(resourceId: string): number[] {
    return this.unique.filter((e) => e.body.resource_external_id === resourceId).map((e) => e.body.sequence);
  }

  report(): ConsumerReport {
    const gaps: { resourceId: string; missing: number[] }[] = [];
    for (const [resourceId, s] of this.byResource) {
      const missing: number[] = [];
      for (let i = 1; i <= s.highest; i++) if (!s.seen.has(i)) missing.push(i);
      if (missing.length > 0) gaps.push({ resourceId, missing });
    }
    return {
      received: this.received,
      outOfScope: this.outOfScope,
      unique: this.unique.length,
      resources: this.byResource.size,
      duplicates: [...this.duplicates],
      invalid: [...this.invalid],
      mismatches: [...this.mismatches],
      gaps,
      reorders: [...this.reorders],
    };
  }

  /** Counts only, for messages. */
  summary() {
    const r = this.report();
    return {
      received: r.received,
      unique: r.unique,
      resources: r.resources,
      duplicates: r.duplicates.length,
      invalid: r.invalid.length,
      mismatches: r.mismatches.length,
      gaps: r.gaps.length,
      reorders: r.reorders.length,
    };
  }

  /**
   * Compare with what should have arrived: per resource, the number of events in the outbox.
   * Returns human-readable problems (empty = everything arrived, nothing extra).
   */
  missingAgainst(expected: ReadonlyMap<string, number>): string[] {
    const problems: string[] = [];
    for (const [resourceId, count] of expected) {
      const s = this.byResource.get(resourceId);
      const have = s ? s.seen.size : 0;
      if (have !== count || (s && s.highest !== count))
        problems.push(`${resourceId}: expected sequences 1..${count}, got ${have} (highest ${s?.highest ?? 0})`);
    }
    for (const resourceId of this.byResource.keys())
      if (!expected.has(resourceId)) problems.push(`${resourceId}: not expected at all`);
    return problems;
  }

  /** Unique bodies in arrival order, one JSON per line (input of `payfleet events parity`). */
  toNdjson(): string {
    return this.unique.map((e) => JSON.stringify(e.body)).join('\n') + (this.unique.length > 0 ? '\n' : '');
  }
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
