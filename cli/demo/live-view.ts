/**
 * What `npm start` shows while it runs. In a terminal: one screen redrawn in place (per-queue
 * depth, in-flight, throughput, DLQ depth; worker health; charge, refund and payout states as the
 * Ledger sees them). Without a terminal (CI, a pipe, a log file): a plain progress line every few seconds.
 */

import { wrap } from './summary.js';

export interface QueueRow {
  readonly name: string;
  /** ApproximateNumberOfMessages / NotVisible of the queue. */
  readonly waiting: number;
  readonly inFlight: number;
  /** Messages finished (deleted or dead-lettered) per second, over the last few seconds. */
  readonly perSec: number;
  readonly done: number;
  readonly retried: number;
  readonly deferred: number;
  /** Depth of its DLQ; undefined for ledger-events. */
  readonly dlq: number | undefined;
}

export interface WorkerRow {
  readonly name: string;
  readonly pid: number | undefined;
  readonly status: string;
  readonly inFlight: number;
  readonly opsPort: number;
  readonly note: string;
}

export interface Snapshot {
  readonly elapsedSec: number;
  readonly phase: string;
  readonly logDir: string;
  readonly queues: readonly QueueRow[];
  readonly workers: readonly WorkerRow[];
  readonly sent: {
    readonly auth: number;
    readonly authTotal: number;
    readonly captures: number;
    readonly capturesTotal: number;
    readonly refunds: number;
    readonly refundsTotal: number;
    readonly payouts: number;
    readonly payoutsTotal: number;
    readonly bad: number;
    readonly badTotal: number;
  };
  /** Status -> count, as the Ledger consumer sees it. */
  readonly charges: ReadonlyMap<string, number>;
  readonly refunds: ReadonlyMap<string, number>;
  readonly payouts: ReadonlyMap<string, number>;
  readonly ledger: {
    readonly received: number;
    readonly unique: number;
    readonly duplicates: number;
    readonly resources: number;
  };
}

const pad = (v: unknown, n: number) => String(v).padStart(n);
const counts = (m: ReadonlyMap<string, number>) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(' · ') || '-';

/** `label` then `text` word-wrapped under it to `width`. */
function labelled(label: string, text: string, width: number): string[] {
  const room = Math.max(20, width - label.length);
  return wrap(text, room, ' · ').map((l, i) => `${i === 0 ? label : ' '.repeat(label.length)}${l}`);
}

/** The screen, as lines (no trailing newline). */
export function renderScreen(s: Snapshot, width = 120): string[] {
  const lines: string[] = [];
  lines.push(`payfleet demo · ${Math.round(s.elapsedSec)}s · ${s.phase} · Ctrl-C stops everything cleanly`);
  lines.push('');
  lines.push(
    `${'queue'.padEnd(18)} ${pad('waiting', 8)} ${pad('in flight', 10)} ${pad('done/s', 7)} ${pad('done', 7)} ${pad('retried', 8)} ${pad('deferred', 9)} ${pad('DLQ', 5)}`,
  );
  for (const q of s.queues) {
    lines.push(
      `${q.name.padEnd(18)} ${pad(q.waiting, 8)} ${pad(q.inFlight, 10)} ${pad(q.perSec.toFixed(1), 7)} ${pad(q.done, 7)} ${pad(q.retried, 8)} ${pad(q.deferred, 9)} ${pad(q.dlq ?? '-', 5)}`,
    );
  }
  lines.push('');
  lines.push(`${'worker'.padEnd(8)} ${pad('pid', 8)}  ${'health'.padEnd(26)} ${pad('in flight', 9)} ${pad('ops port', 8)}  note`);
  for (const w of s.workers) {
    lines.push(
      `${w.name.padEnd(8)} ${pad(w.pid ?? '-', 8)}  ${w.status.slice(0, 26).padEnd(26)} ${pad(w.inFlight, 9)} ${pad(w.opsPort, 8)}  ${w.note}`,
    );
  }
  lines.push('');
  const sent = s.sent;
  lines.push(
    `sent     auth ${sent.auth}/${sent.authTotal} · captures ${sent.captures}/${sent.capturesTotal} · refunds ${sent.refunds}/${sent.refundsTotal} · payouts ${sent.payouts}/${sent.payoutsTotal} · bad messages ${sent.bad}/${sent.badTotal}`,
  );
  lines.push(...labelled('charges  ', counts(s.charges), width));
  if (sent.refundsTotal > 0) lines.push(...labelled('refunds  ', counts(s.refunds), width));
  if (sent.payoutsTotal > 0) lines.push(...labelled('payouts  ', counts(s.payouts), width));
  lines.push(
    `Ledger   ${s.ledger.unique} events for ${s.ledger.resources} resources (${s.ledger.received} deliveries, ${s.ledger.duplicates} duplicates dropped by event_id)`,
  );
  lines.push(`logs     ${s.logDir}`);
  return lines.map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
}

/** One plain progress line (no terminal). */
export function renderLine(s: Snapshot): string {
  const q = (name: string) => s.queues.find((x) => x.name === name);
  const part = (name: string, label: string) => {
    const r = q(name);
    return r ? `${label} ${r.done} done ${r.inFlight} in flight ${r.dlq ?? 0} DLQ` : '';
  };
  const ready = s.workers.filter((w) => w.status === 'ready').length;
  const ledger = q('ledger-events');
  return [
    `[${pad(Math.round(s.elapsedSec), 4)}s] ${s.phase}`,
    part('auth-requests', 'auth'),
    part('capture-requests', 'capture'),
    part('refund-requests', 'refund'),
    s.sent.payoutsTotal > 0 ? part('payout-events', 'payout') : '',
    `ledger ${ledger?.done ?? 0} emitted ${s.ledger.unique} received`,
    `workers ${ready}/${s.workers.length} ready`,
  ]
    .filter(Boolean)
    .join(' | ');
}

/** Redraws a block of lines in place on a terminal. */
export class LiveScreen {
  private drawn = 0;
  private readonly out: NodeJS.WriteStream;

  constructor(out: NodeJS.WriteStream = process.stdout) {
    this.out = out;
    this.out.write('\x1b[?25l'); // hide the cursor while redrawing
  }

  draw(lines: readonly string[]): void {
    // Up to the first line we drew, then clear to the end of the screen, then draw again.
    const up = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    this.out.write(`${up}\x1b[J${lines.join('\n')}\n`);
    this.drawn = lines.length;
  }

  /** Leave the last frame on screen and give the cursor back. */
  close(): void {
    this.out.write('\x1b[?25h');
  }
}
