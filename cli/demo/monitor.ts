/**
 * What the live view shows, gathered once a second: queue depths from SQS, each worker's
 * /metrics (throughput, retries, in-flight) and /health/ready, and the charge, refund and payout
 * states the Ledger consumer has seen so far.
 */
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { QueueKey, ResourceNames } from '../../shared/resources.js';
import { sumMetric, type DemoWorker, type WorkerHealth } from './fleet.js';
import type { QueueRow, WorkerRow } from './live-view.js';

/** Ledger event type -> the resource status it records (docs/contract.md §3, §5). */
const STATUS_OF_EVENT: Readonly<Record<string, string>> = {
  PAYMENT_CREATED: 'CREATED',
  AUTHORISATION_SUCCEEDED: 'AUTHORISATION_SUCCESS',
  AUTHORISATION_REJECTED: 'AUTHORISATION_REJECTED',
  AUTHORISATION_ERROR: 'AUTHORISATION_ERROR',
  CANCELLED_WITH_GATEWAY_AFTER_AUTHORISATION_ERROR: 'AUTHORISATION_ERROR_CANCELLED',
  USER_APPROVED_FOR_CAPTURE: 'CAPTURE_APPROVED',
  CAPTURE_SUBMITTED: 'CAPTURE_SUBMITTED',
  CAPTURE_CONFIRMED: 'CAPTURED',
  CAPTURE_ERRORED: 'CAPTURE_ERROR',
  CAPTURE_ABANDONED_AFTER_TOO_MANY_RETRIES: 'CAPTURE_ERROR',
  REFUND_CREATED: 'REFUND_CREATED',
  REFUND_SUBMITTED: 'REFUND_SUBMITTED',
  REFUND_SUCCEEDED: 'REFUNDED',
  REFUND_ERROR: 'REFUND_ERROR',
  PAYOUT_CREATED: 'RECEIVED',
  PAYOUT_INITIATED: 'INITIATED',
  PAYOUT_PAID: 'PAID',
  PAYOUT_FAILED: 'REJECTED',
};

interface LedgerEventLike {
  readonly body: {
    readonly resource_external_id: string;
    readonly resource_type: string;
    readonly sequence: number;
    readonly event_type: string;
  };
}

/** Resource states as the Ledger sees them: the status of each resource's highest sequence so far. */
export class LedgerView {
  private seen = 0;
  private readonly latest = new Map<string, { sequence: number; status: string; type: string }>();

  /** Fold in events received since the last call (`all` is the consumer's unique events, in arrival order). */
  update(all: readonly LedgerEventLike[]): void {
    for (; this.seen < all.length; this.seen++) {
      const b = all[this.seen]!.body;
      const cur = this.latest.get(b.resource_external_id);
      if (cur && cur.sequence > b.sequence) continue;
      this.latest.set(b.resource_external_id, {
        sequence: b.sequence,
        status: STATUS_OF_EVENT[b.event_type] ?? b.event_type,
        type: b.resource_type,
      });
    }
  }

  status(resourceId: string): string | undefined {
    return this.latest.get(resourceId)?.status;
  }

  /** Status -> count for one resource type. */
  counts(type: 'payment' | 'refund' | 'payout'): Map<string, number> {
    const m = new Map<string, number>();
    for (const v of this.latest.values()) if (v.type === type) m.set(v.status, (m.get(v.status) ?? 0) + 1);
    return m;
  }
}

export interface MonitorState {
  readonly queues: QueueRow[];
  readonly workers: WorkerRow[];
  /** DLQ depth per source queue. */
  readonly dlqDepth: ReadonlyMap<QueueKey, number>;
}

const SHORT: Readonly<Record<QueueKey, string>> = {
  'auth-requests': 'auth-requests',
  'capture-requests': 'capture-requests',
  'refund-requests': 'refund-requests',
  'payout-events': 'payout-events',
  'ledger-events': 'ledger-events',
};

/** Polls SQS and the workers; `sample()` returns the newest state. */
export class FleetMonitor {
  private readonly history = new Map<QueueKey, { t: number; done: number }[]>();
  private readonly health = new Map<string, WorkerHealth>();
  private lastHealthAt = 0;

  constructor(
    private readonly sqs: SQSClient,
    private readonly names: ResourceNames,
    private readonly urls: ReadonlyMap<string, string>,
    private readonly workers: readonly DemoWorker[],
    private readonly queues: readonly QueueKey[],
  ) {}

  private async depth(name: string): Promise<{ waiting: number; inFlight: number }> {
    const url = this.urls.get(name);
    if (!url) return { waiting: 0, inFlight: 0 };
    try {
      const a = await this.sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      return {
        waiting: Number(a.Attributes?.ApproximateNumberOfMessages ?? 0),
        inFlight: Number(a.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
      };
    } catch {
      return { waiting: 0, inFlight: 0 };
    }
  }

  async sample(): Promise<MonitorState> {
    const now = Date.now();
    const refreshHealth = now - this.lastHealthAt >= 2000;
    if (refreshHealth) this.lastHealthAt = now;
    const [metrics, depths, dlqs] = await Promise.all([
      Promise.all(this.workers.map((w) => w.metrics())),
      Promise.all(this.queues.map((q) => this.depth(this.names.queue(q)))),
      Promise.all(this.queues.map((q) => (q === 'ledger-events' ? Promise.resolve(undefined) : this.depth(this.names.dlq(q))))),
      refreshHealth ? Promise.all(this.workers.map(async (w) => this.health.set(w.name, await w.health()))) : Promise.resolve(),
    ]);
    const byWorker = new Map(this.workers.map((w, i) => [w.name, metrics[i]]));
    const all = (name: string, match: Record<string, string> = {}) => metrics.reduce((n, m) => n + sumMetric(m, name, match), 0);
    const dlqDepth = new Map<QueueKey, number>();
    const queues: QueueRow[] = this.queues.map((q, i) => {
      const queue = this.names.queue(q);
      const done =
        q === 'ledger-events'
          ? all('payfleet_ledger_events_emitted_total')
          : all('payfleet_messages_succeeded_total', { queue }) + all('payfleet_messages_dead_lettered_total', { queue });
      const h = this.history.get(q) ?? [];
      h.push({ t: now, done });
      while (h.length > 2 && now - h[0]!.t > 5000) h.shift();
      this.history.set(q, h);
      const first = h[0]!;
      const perSec = now > first.t ? Math.max(0, ((done - first.done) * 1000) / (now - first.t)) : 0;
      const dlq = dlqs[i] ? dlqs[i]!.waiting + dlqs[i]!.inFlight : undefined;
      if (dlq !== undefined) dlqDepth.set(q, dlq);
      return {
        name: SHORT[q],
        waiting: depths[i]!.waiting,
        inFlight: depths[i]!.inFlight,
        perSec,
        done,
        retried: all('payfleet_messages_retried_total', { queue }),
        deferred: all('payfleet_messages_deferred_total', { queue }),
        dlq,
      };
    });
    const workers: WorkerRow[] = this.workers.map((w) => {
      const m = byWorker.get(w.name);
      const exited = w.child.exitCode !== null || w.child.signalCode !== null;
      const h = this.health.get(w.name);
      const status = exited ? `exited (${w.child.exitCode ?? w.child.signalCode})` : (h?.detail ?? 'starting');
      return {
        name: w.name,
        pid: w.child.pid,
        status,
        inFlight: sumMetric(m, 'payfleet_messages_in_flight'),
        opsPort: w.opsPort,
        note: noteFor(w.name, m),
      };
    });
    return { queues, workers, dlqDepth };
  }
}

function noteFor(name: string, m: Map<string, number> | undefined): string {
  if (!m) return '';
  switch (name) {
    case 'auth':
      return `${sumMetric(m, 'payfleet_authorisations_total')} authorisations recorded`;
    case 'capture':
      return `${sumMetric(m, 'payfleet_captures_total', { outcome: 'CAPTURE_APPROVED_RETRY' })} captures retried · ${sumMetric(m, 'payfleet_charges_awaiting_capture')} awaiting capture`;
    case 'refund':
      return `${sumMetric(m, 'payfleet_refunds_total', { outcome: 'REFUNDED' })} refunded · ${sumMetric(m, 'payfleet_refunds_total', { outcome: 'PENDING' })} pending at the processor · ${sumMetric(m, 'payfleet_refund_refusals_total')} refused`;
    case 'ledger':
      return `${sumMetric(m, 'payfleet_ledger_shards_held')} shards held · ${sumMetric(m, 'payfleet_ledger_held_back_total')} held back for order`;
    case 'payout':
      return `${sumMetric(m, 'payfleet_payout_shards_held')} shards held · ${sumMetric(m, 'payfleet_payouts_waiting')} waiting · ${sumMetric(m, 'payfleet_payout_initiation_requests_total')} pain.001 requests`;
    default:
      return '';
  }
}
