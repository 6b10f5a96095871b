import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';

/**
 * Coalesces single-message deletes and visibility changes into SQS batch calls (up to 10 per
 * call), waiting at most `lingerMs` for company. Each caller gets its own promise that settles
 * with its own entry's fate: batch calls succeed as a whole while single entries fail, so the
 * `Failed` list of every response is checked entry by entry.
 */
interface Pending<E> {
  entry: E;
  resolve: () => void;
  reject: (err: Error) => void;
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

  add(entry: E): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ entry, resolve, reject });
      if (this.pending.length >= 10) this.flushNow();
      else this.timer ??= setTimeout(() => this.flushNow(), this.lingerMs);
    });
  }

  /** Send what is pending and wait for every call under way. */
  async flush(): Promise<void> {
    this.flushNow();
    await Promise.allSettled([...this.inflight]);
  }

  private flushNow(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.pending.length > 0) {
      const chunk = this.pending.splice(0, 10);
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
