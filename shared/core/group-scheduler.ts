/**
 * Runs tasks strictly one at a time and in arrival order within a key (a FIFO MessageGroupId),
 * and different keys concurrently up to `concurrency`. A slow key holds only its own lane.
 *
 *   group A: a1 ──────────────(slow)──────────────▶ a2 ─▶
 *   group B: b1 ─▶ b2 ─▶ b3 ─▶
 *   group C: c1 ─▶ c2 ─▶        (B and C never wait for A)
 *
 * A task waiting for something outside it (a dependency to recover) can give its slot up with
 * `yieldSlot(promise)`: its lane stays blocked — its group's order is kept — while other lanes use
 * the slot; when the promise settles the task takes the next free slot before any new lane does.
 */
/** Give the slot up while `waitFor` is pending; resolves (with its value) once a slot is held again. */
export type YieldSlot = <R>(waitFor: Promise<R>) => Promise<R>;

export interface Lane<T> {
  readonly key: string;
  readonly items: T[];
  running: boolean;
}

export class GroupScheduler<T> {
  private readonly lanes = new Map<string, Lane<T>>();
  /** Keys with queued items, waiting for a free slot, in arrival order. */
  private readonly ready: string[] = [];
  private active = 0;
  private queued = 0;
  /** Tasks that gave their slot up and are waiting for something else. */
  private yielded = 0;
  /** Tasks whose wait is over, waiting for a slot (served before new lanes). */
  private readonly resuming: Array<() => void> = [];
  private idleWaiters: (() => void)[] = [];
  private capacityWaiters: (() => void)[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly run: (item: T, yieldSlot: YieldSlot) => Promise<'continue' | 'stop-lane'>,
    /** Called with items a lane drops after `stop-lane` (the rest of a group's batch). */
    private readonly onDropped: (items: T[]) => void,
  ) {}

  /** Items held (queued or running), not counting tasks that yielded their slot. */
  get size(): number {
    return this.queued + this.active + this.resuming.length;
  }

  /** Tasks started and not finished, yielded ones included. */
  get running(): number {
    return this.active + this.yielded + this.resuming.length;
  }

  /** Tasks waiting outside their slot (see {@link YieldSlot}). */
  get waiting(): number {
    return this.yielded;
  }

  push(key: string, item: T): void {
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { key, items: [], running: false };
      this.lanes.set(key, lane);
    }
    lane.items.push(item);
    this.queued++;
    if (!lane.running && !this.ready.includes(key)) this.ready.push(key);
    this.pump();
  }

  /** Resolves when fewer than `limit` items are held. */
  waitForCapacity(limit: number): Promise<void> {
    if (this.size < limit) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.size < limit) resolve();
        else this.capacityWaiters.push(check);
      };
      this.capacityWaiters.push(check);
    });
  }

  /** Resolves when nothing is held and no task is running or waiting. */
  whenIdle(): Promise<void> {
    if (this.size === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Remove and return every queued (not running) item. */
  drainQueued(): T[] {
    const out: T[] = [];
    for (const lane of this.lanes.values()) {
      out.push(...lane.items.splice(0));
      if (!lane.running) this.lanes.delete(lane.key);
    }
    this.ready.length = 0;
    this.queued = 0;
    this.notify();
    return out;
  }

  private pump(): void {
    while (this.active < this.concurrency && this.resuming.length > 0) {
      this.active++;
      this.resuming.shift()!();
    }
    while (this.active < this.concurrency && this.ready.length > 0) {
      const key = this.ready.shift()!;
      const lane = this.lanes.get(key);
      if (!lane || lane.running || lane.items.length === 0) continue;
      const item = lane.items.shift()!;
      this.queued--;
      lane.running = true;
      this.active++;
      void this.execute(lane, item);
    }
  }

  private async execute(lane: Lane<T>, item: T): Promise<void> {
    let verdict: 'continue' | 'stop-lane' = 'continue';
    try {
      verdict = await this.run(item, (waitFor) => this.yieldWhile(waitFor));
    } catch {
      verdict = 'stop-lane';
    }
    this.active--;
    lane.running = false;
    if (verdict === 'stop-lane' && lane.items.length > 0) {
      const dropped = lane.items.splice(0);
      this.queued -= dropped.length;
      this.onDropped(dropped);
    }
    if (lane.items.length > 0) this.ready.push(lane.key);
    else this.lanes.delete(lane.key);
    this.pump();
    this.notify();
  }

  private async yieldWhile<R>(waitFor: Promise<R>): Promise<R> {
    this.active--;
    this.yielded++;
    this.pump();
    this.notify();
    try {
      return await waitFor;
    } finally {
      this.yielded--;
      // pump() hands the slot over (active++) before any new lane starts.
      await new Promise<void>((resume) => {
        this.resuming.push(resume);
        this.pump();
      });
    }
  }

  private notify(): void {
    const waiters = this.capacityWaiters;
    this.capacityWaiters = [];
    for (const w of waiters) w();
    if (this.size === 0 && this.running === 0) {
      const idle = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of idle) w();
    }
  }
}
