import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';

/**
 * Coalesces single-message deletes and visibility changes into SQS batch calls (up to 10 per
 * call). Entries may carry a group (the consumer's: the receive they came from). A group's entries
 * go out together, in one call, when its owner says the group is complete
 * ({@link Batcher.flushPending}), when ten of them are pending, or when the oldest of them has
 * waited `lingerMs`, whichever comes first; entries without a group form one group of their own.
 * Each caller gets its own promise that settles with its own entry's fate: batch calls succeed as
 * a whole while single entries fail, so the `Failed` list of every response is checked entry by
 * entry.
 */
interface Pending<E> {
  entry: E;
  resolve: () => void;
  reject: (err: Error) => void;
  readonly group: object | undefined;
  /** performance.now() when added. */
  readonly at: number;
}

export class SqsEntryError extends Error {
  constructor(
    readonly op: 'delete' | 'visibility',
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'SqsEntryError';
  }
}

abstract class Batcher<E> {
  private pending: Pending<E>[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly inflight = new Set<Promise<void>>();

  constructor(protected readonly lingerMs: number) {}

  add(entry: E, group?: object): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ entry, resolve, reject, group, at: performance.now() });
      if (this.pending.filter((p) => p.group === group).length >= 10) this.sendWhere((p) => p.group === group);
      else this.arm();
    });
  }

  /** Send what is pending and wait for every call under way. */
  async flush(): Promise<void> {
    this.sendWhere(() => true);
    await Promise.allSettled([...this.inflight]);
  }

  /** Send the pending entries of `group` now (all pending ones without it), not waiting for the calls. */
  flushPending(group?: object): void {
    this.sendWhere(group === undefined ? () => true : (p) => p.group === group);
  }

  /** The linger ran out for the oldest entries: send their groups whole. */
  private expire(): void {
    this.timer = undefined;
    const now = performance.now();
    const due = new Set(this.pending.filter((p) => now - p.at >= this.lingerMs - 1).map((p) => p.group));
    this.sendWhere((p) => due.has(p.group));
    this.arm();
  }

  /** A timer for the oldest pending entry, if none is set. */
  private arm(): void {
    if (this.timer || this.pending.length === 0) return;
    const oldest = Math.min(...this.pending.map((p) => p.at));
    this.timer = setTimeout(() => this.expire(), Math.max(0, oldest + this.lingerMs - performance.now()));
  }

  private sendWhere(take: (p: Pending<E>) => boolean): void {
    const out = this.pending.filter(take);
    if (out.length === 0) return;
    this.pending = this.pending.filter((p) => !take(p));
    // The oldest entry may have left: set the timer again for what remains.
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.arm();
    while (out.length > 0) {
      const chunk = out.splice(0, 10);
      const p = this.send(chunk).finally(() => this.inflight.delete(p));
      this.inflight.add(p);
    }
  }

  protected abstract send(chunk: Pending<E>[]): Promise<void>;

  protected settle(chunk: Pending<E>[], failed: { Id?: string; Code?: string; Message?: string }[] | undefined, op: 'delete' | 'visibility'): void {
    const failures = new Map((failed ?? []).map((f) => [f.Id, f]));
    chunk.forEach((p, i) => {
      const f = failures.get(String(i));
      if (f) p.reject(new SqsEntryError(op, f.Code, `${op} failed: ${f.Code ?? 'unknown'} ${f.Message ?? ''}`.trim()));
      else p.resolve();
    });
  }
}

export class DeleteBatcher extends Batcher<{ receiptHandle: string }> {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    lingerMs = 5,
  ) {
    super(lingerMs);
  }

  protected async send(chunk: Pending<{ receiptHandle: string }>[]): Promise<void> {
    try {
      const out = await this.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: chunk.map((p, i) => ({ Id: String(i), ReceiptHandle: p.entry.receiptHandle })),
        }),
      );
      this.settle(chunk, out.Failed, 'delete');
    } catch (err) {
      for (const p of chunk) p.reject(err as Error);
    }
  }
}

export class VisibilityBatcher extends Batcher<{ receiptHandle: string; visibilityTimeoutSec: number }> {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    lingerMs = 5,
  ) {
    super(lingerMs);
  }

  protected async send(chunk: Pending<{ receiptHandle: string; visibilityTimeoutSec: number }>[]): Promise<void> {
    try {
      const out = await this.sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: chunk.map((p, i) => ({
            Id: String(i),
            ReceiptHandle: p.entry.receiptHandle,
            VisibilityTimeout: p.entry.visibilityTimeoutSec,
          })),
        }),
      );
      this.settle(chunk, out.Failed, 'visibility');
    } catch (err) {
      for (const p of chunk) p.reject(err as Error);
    }
  }
}
