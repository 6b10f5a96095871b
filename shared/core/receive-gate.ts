/**
 * A worker's own reason not to receive, beside the dependency pauses the consumer makes itself (the
 * payout worker: not ready, or no shard held). Paused, the pollers send no ReceiveMessage: messages
 * stay in SQS and their receive counts, which count towards the queue's redrive limit whatever the
 * consumer would do with a message, do not grow. Receiving and handing back would burn them.
 *
 *   resume() ─ receiving ─ pause() ─┬ the long poll already open finishes (aborting it would strand
 *                                   │ what it received until visibility expires); what it brought
 *                                   │ is handled, or handed back by the accept gate
 *                                   └ no next ReceiveMessage ── resume() ─ receiving
 *
 * Unlike a dependency pause it is not an outage: it sets no `payfleet_consumer_paused` and logs
 * nothing (the worker says why it paused); `FifoConsumer.pausedFor` shows it. The consumer checks it
 * before each receive, where it already waits for capacity and for dependencies.
 */
export class ReceiveGate {
  private reason: string | undefined;
  private waiters: Array<() => void> = [];

  /** @param pausedFor a reason to start paused (the payout worker starts not ready). */
  constructor(pausedFor?: string) {
    this.reason = pausedFor;
  }

  /** Why receiving is paused, or undefined while it may receive. */
  get pausedFor(): string | undefined {
    return this.reason;
  }

  /** Stop receiving after the open long poll, until {@link resume}. Idempotent (the reason is updated). */
  pause(reason: string): void {
    this.reason = reason;
  }

  /** Receive again. Idempotent. */
  resume(): void {
    this.reason = undefined;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once not paused, or when `signal` aborts (never rejects). */
  whenOpen(signal: AbortSignal): Promise<void> {
    if (this.reason === undefined || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
