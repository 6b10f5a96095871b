/**
 * What `payfleet status` shows, gathered in one pass: every queue's and DLQ's depth from SQS
 * (GetQueueAttributes), the DLQs' letters by error code (read the way `payfleet dlq list` reads them,
 * released at once), each worker's readiness and metrics from its ops endpoint, and, where there is
 * one, the age of each queue's oldest message.
 *
 * The age of the oldest message is not a queue attribute. On AWS it is CloudWatch's
 * ApproximateAgeOfOldestMessage (AWS/SQS, one datapoint a minute, what the oldest-message-age alarms
 * read); the emulators have no CloudWatch, so there it is `null` and the document says why. Peeking
 * at the head of a source queue instead would count as a receive towards its maxReceiveCount and
 * block its message group, so status never receives from a source queue. A DLQ's oldest letter is
 * known from the letters themselves (`payfleet-failed-at`, else SentTimestamp).
 */
import { GetQueueAttributesCommand, GetQueueUrlCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { AwsConfig } from '../../shared/config/common.js';
import { QUEUE_KEYS, QUEUES_WITH_DLQ, type QueueKey, type ResourceNames } from '../../shared/resources.js';
import { countByCode, failedTime, type HeldLetter, LetterReader } from './dlq-letters.js';
import { type BreakerState, breakerRank, type OpsTarget, readWorker, type WorkerStatus } from './status-ops.js';

export interface Depth {
  readonly exists: boolean;
  /** Why the queue could not be read (not bootstrapped, access denied …). */
  readonly error?: string;
  /** ApproximateNumberOfMessages. */
  readonly waiting: number | null;
  /** ApproximateNumberOfMessagesNotVisible: received and not yet deleted (or hidden by a reader). */
  readonly inFlight: number | null;
  /** ApproximateNumberOfMessagesDelayed. */
  readonly delayed: number | null;
}

export interface DlqStatus extends Depth {
  readonly name: string;
  /** Letters read in this pass. */
  readonly letters: number;
  readonly byCode: Readonly<Record<string, number>>;
  /** Counted by SQS but not read: behind a letter of the same message group, being read by someone else, or past the limit. */
  readonly unlisted: number;
  readonly truncated: boolean;
  readonly oldestAgeSec: number | null;
}

export interface QueueStatus extends Depth {
  readonly key: QueueKey;
  readonly name: string;
  /** Age of the oldest message in seconds, or null when unknown (see FleetStatus.oldestAge). */
  readonly oldestAgeSec: number | null;
  readonly dlq: DlqStatus | null;
}

export interface BreakerRow {
  readonly dependency: string;
  /** The worst state any reachable worker reports. */
  readonly state: BreakerState;
  readonly workers: Readonly<Record<string, BreakerState>>;
}

/** The document `payfleet status --json` prints. */
export interface FleetStatus {
  readonly at: string;
  readonly prefix: string;
  /** Where queues' oldestAgeSec comes from: `cloudwatch`, or `unavailable` with the reason. */
  readonly oldestAge: { readonly source: 'cloudwatch' | 'unavailable'; readonly note: string };
  readonly queues: readonly QueueStatus[];
  readonly workers: readonly WorkerStatus[];
  readonly breakers: readonly BreakerRow[];
}

/** Port: the age of the oldest message of queues, by name (absent = no datapoint). */
export interface QueueAgeReader {
  readonly description: string;
  oldestAges(queueNames: readonly string[]): Promise<ReadonlyMap<string, number>>;
  close(): void;
}

/** The slice of CloudWatch's GetMetricData this needs (structural: no SDK type crosses the port). */
export interface MetricDataInput {
  readonly StartTime: Date;
  readonly EndTime: Date;
  readonly ScanBy: 'TimestampDescending';
  readonly MetricDataQueries: readonly {
    readonly Id: string;
    readonly ReturnData: boolean;
    readonly MetricStat: {
      readonly Metric: { readonly Namespace: string; readonly MetricName: string; readonly Dimensions: readonly { Name: string; Value: string }[] };
      readonly Period: number;
      readonly Stat: string;
    };
  }[];
}
export interface MetricDataOutput {
  readonly MetricDataResults?: readonly { readonly Id?: string; readonly Values?: readonly number[] }[];
}

/**
 * Ages from CloudWatch: the newest 1-minute maximum of ApproximateAgeOfOldestMessage in the last 15
 * minutes (SQS publishes one a minute, a few minutes late), one GetMetricData call for all queues.
 */
export function cloudWatchAgeReader(
  getMetricData: (input: MetricDataInput) => Promise<MetricDataOutput>,
  options: { now?: () => number; close?: () => void } = {},
): QueueAgeReader {
  const now = options.now ?? Date.now;
  return {
    description: 'CloudWatch AWS/SQS ApproximateAgeOfOldestMessage (newest 1-minute maximum)',
    async oldestAges(queueNames) {
      const end = now();
      const out = await getMetricData({
        StartTime: new Date(end - 15 * 60_000),
        EndTime: new Date(end),
        ScanBy: 'TimestampDescending',
        MetricDataQueries: queueNames.map((name, i) => ({
          Id: `q${i}`,
          ReturnData: true,
          MetricStat: {
            Metric: { Namespace: 'AWS/SQS', MetricName: 'ApproximateAgeOfOldestMessage', Dimensions: [{ Name: 'QueueName', Value: name }] },
            Period: 60,
            Stat: 'Maximum',
          },
        })),
      });
      const ages = new Map<string, number>();
      for (const r of out.MetricDataResults ?? []) {
        const i = Number((r.Id ?? '').slice(1));
        const latest = r.Values?.[0];
        if (queueNames[i] !== undefined && latest !== undefined) ages.set(queueNames[i]!, latest);
      }
      return ages;
    },
    close: () => options.close?.(),
  };
}

/**
 * The CloudWatch reader for this endpoint, or why there is none. Only AWS itself has the metric (an
 * SQS endpoint override means an emulator or LocalStack). The client package is loaded by name at
 * run time: it is not a dependency of payfleet yet, and a missing package must not stop `status`.
 */
export async function loadQueueAgeReader(aws: AwsConfig): Promise<{ reader?: QueueAgeReader; note: string }> {
  if (aws.sqsEndpoint)
    return { note: `not available at ${aws.sqsEndpoint}: ApproximateAgeOfOldestMessage is a CloudWatch metric of AWS itself` };
  const moduleName = '@aws-sdk/client-cloudwatch';
  let mod: { CloudWatchClient: new (c: { region: string }) => CwClient; GetMetricDataCommand: new (i: MetricDataInput) => unknown };
  try {
    mod = (await import(moduleName)) as typeof mod;
  } catch {
    return { note: `not available: ${moduleName} is not installed` };
  }
  const client = new mod.CloudWatchClient({ region: aws.region });
  const reader = cloudWatchAgeReader((input) => client.send(new mod.GetMetricDataCommand(input)) as Promise<MetricDataOutput>, {
    close: () => client.destroy(),
  });
  return { reader, note: reader.description };
}
interface CwClient {
  send(command: unknown): Promise<unknown>;
  destroy(): void;
}

const num = (v: string | undefined): number | null => (v === undefined ? null : Number(v));

const reasonOf = (err: unknown): string => {
  const e = err as { name?: string; message?: string };
  return e?.name && e.name !== 'Error' ? e.name : (e?.message ?? String(err));
};

export interface StatusCollectorOptions {
  readonly sqs: SQSClient;
  readonly names: ResourceNames;
  readonly targets: readonly OpsTarget[];
  readonly ages?: { readonly reader?: QueueAgeReader; readonly note: string };
  /** Letters read per DLQ per pass. @default 1000 */
  readonly dlqLimit?: number;
  readonly now?: () => number;
}

/** Collects {@link FleetStatus}; keeps queue URLs between passes (`--watch`). */
export class StatusCollector {
  private readonly urls = new Map<string, string>();

  constructor(private readonly o: StatusCollectorOptions) {}

  private async url(name: string): Promise<string> {
    const known = this.urls.get(name);
    if (known) return known;
    const url = (await this.o.sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl!;
    this.urls.set(name, url);
    return url;
  }

  private async depth(name: string): Promise<Depth & { url?: string }> {
    try {
      const url = await this.url(name);
      const a = await this.o.sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
        }),
      );
      const at = a.Attributes ?? {};
      return {
        url,
        exists: true,
        waiting: num(at.ApproximateNumberOfMessages),
        inFlight: num(at.ApproximateNumberOfMessagesNotVisible),
        delayed: num(at.ApproximateNumberOfMessagesDelayed),
      };
    } catch (err) {
      this.urls.delete(name);
      return { exists: false, error: reasonOf(err), waiting: null, inFlight: null, delayed: null };
    }
  }

  /** Depth, then the letters by code (only when there are visible ones to read), released at once. */
  private async dlq(name: string, now: number): Promise<DlqStatus> {
    const { url, ...depth } = await this.depth(name);
    const limit = this.o.dlqLimit ?? 1000;
    const visible = depth.waiting ?? 0;
    const total = visible + (depth.inFlight ?? 0);
    const base = { name, ...depth, letters: 0, byCode: {}, unlisted: total, truncated: false, oldestAgeSec: null };
    if (!url || visible === 0) return base;
    // The same pass as `payfleet dlq list`: each letter held briefly, all released when it ends.
    const reader = new LetterReader(this.o.sqs, url, 30);
    const letters: HeldLetter[] = [];
    try {
      for (let batch = await reader.next(); batch !== null; batch = await reader.next()) {
        letters.push(...batch);
        // Everything SQS counted as visible is read: stop without the pass's confirming long poll.
        if (letters.length >= visible || letters.length >= limit) break;
      }
    } catch (err) {
      return { ...base, error: `reading letters: ${reasonOf(err)}` };
    } finally {
      await reader.releaseAll();
    }
    let oldest: number | undefined;
    for (const { view } of letters) {
      const at = Date.parse(failedTime(view));
      if (Number.isFinite(at)) oldest = Math.min(oldest ?? at, at);
    }
    return {
      ...base,
      letters: letters.length,
      // Most frequent first, as `payfleet dlq list` counts them.
      byCode: Object.fromEntries(countByCode(letters.map((l) => l.view)).map((c) => [c.code, c.count])),
      unlisted: Math.max(0, total - letters.length),
      truncated: letters.length >= limit,
      oldestAgeSec: oldest === undefined ? null : Math.max(0, Math.round((now - oldest) / 1000)),
    };
  }

  private async ages(): Promise<{ ages: ReadonlyMap<string, number>; source: 'cloudwatch' | 'unavailable'; note: string }> {
    const reader = this.o.ages?.reader;
    if (!reader) return { ages: new Map(), source: 'unavailable', note: this.o.ages?.note ?? 'not available' };
    try {
      return { ages: await reader.oldestAges(QUEUE_KEYS.map((k) => this.o.names.queue(k))), source: 'cloudwatch', note: reader.description };
    } catch (err) {
      return { ages: new Map(), source: 'unavailable', note: `CloudWatch: ${reasonOf(err)}` };
    }
  }

  async collect(): Promise<FleetStatus> {
    const now = (this.o.now ?? Date.now)();
    const { names } = this.o;
    const [depths, dlqs, ages, workers] = await Promise.all([
      Promise.all(QUEUE_KEYS.map((k) => this.depth(names.queue(k)))),
      Promise.all(QUEUE_KEYS.map((k) => (QUEUES_WITH_DLQ.includes(k) ? this.dlq(names.dlq(k), now) : Promise.resolve(null)))),
      this.ages(),
      Promise.all(this.o.targets.map((t) => readWorker(t))),
    ]);
    const queues = QUEUE_KEYS.map((key, i): QueueStatus => {
      const { url: _url, ...depth } = depths[i]!;
      const name = names.queue(key);
      const age = ages.ages.get(name);
      return { key, name, ...depth, oldestAgeSec: age === undefined ? null : Math.round(age), dlq: dlqs[i] ?? null };
    });
    return {
      at: new Date(now).toISOString(),
      prefix: names.prefix,
      oldestAge: { source: ages.source, note: ages.note },
      queues,
      workers,
      breakers: breakerRows(workers),
    };
  }
}

/** One row per dependency any reachable worker reports a breaker for, worst first. */
export function breakerRows(workers: readonly WorkerStatus[]): BreakerRow[] {
  const rows = new Map<string, Record<string, BreakerState>>();
  for (const w of workers) {
    for (const [dep, state] of Object.entries(w.breakers ?? {})) {
      const row = rows.get(dep) ?? {};
      row[w.name] = state;
      rows.set(dep, row);
    }
  }
  return [...rows]
    .map(([dependency, byWorker]) => {
      const state = Object.values(byWorker).reduce<BreakerState>((a, b) => (breakerRank(b) > breakerRank(a) ? b : a), 'closed');
      return { dependency, state, workers: byWorker };
    })
    .sort((a, b) => breakerRank(b.state) - breakerRank(a.state) || a.dependency.localeCompare(b.dependency));
}
