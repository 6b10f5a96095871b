/** Human-readable output helpers for the CLI. `--json` output never goes through these. */
import type { OutboxEvent } from '../../workers/ledger/ports.js';

/** A ledger event as the read commands (`charge`, `refund`, `payout`) report it. */
export interface ReportEvent {
  readonly sequence: number;
  readonly eventType: string;
  readonly timestamp: string;
  readonly emitted: boolean;
  readonly eventId: string;
  readonly details: Record<string, unknown>;
}

export const reportEvents = (
  events: readonly Pick<OutboxEvent, 'sequence' | 'eventType' | 'timestamp' | 'emittedAt' | 'eventId' | 'details'>[],
): ReportEvent[] =>
  events.map((e) => ({
    sequence: e.sequence,
    eventType: e.eventType,
    timestamp: e.timestamp,
    emitted: e.emittedAt !== undefined,
    eventId: e.eventId,
    details: e.details,
  }));

/** Minor units as money, with the units spelled out: "12.50 GBP (1250 minor units)". */
export const money = (minor: number, currency: string) => `${(minor / 100).toFixed(2)} ${currency} (${minor} minor units)`;

/** The "history:" and "ledger events:" tables of a charge or refund report. */
export function printHistoryAndEvents(history: readonly { readonly status: string; readonly at: string }[], events: readonly ReportEvent[]): void {
  process.stdout.write('\nhistory:\n');
  printTable(
    ['status', 'at'],
    history.map((h) => [h.status, h.at]),
  );
  process.stdout.write('\nledger events:\n');
  if (events.length === 0) process.stdout.write('(none)\n');
  else
    printTable(
      ['seq', 'event_type', 'timestamp', 'emitted', 'event_id'],
      events.map((e) => [e.sequence, e.eventType, e.timestamp, e.emitted ? 'yes' : 'pending', e.eventId]),
    );
}

export function printTable(headers: readonly string[], rows: readonly (readonly unknown[])[], out: NodeJS.WritableStream = process.stdout): void {
  const cells = rows.map((r) => r.map((c) => (c === undefined || c === null ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  out.write(`${line(headers)}\n`);
  out.write(`${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const r of cells) out.write(`${line(r)}\n`);
}

export function printJson(value: unknown, out: NodeJS.WritableStream = process.stdout): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * When the reader of stdout (or stderr) goes away — `payfleet dlq list | head` — drop the rest of
 * that stream's output instead of crashing with an EPIPE stack trace. The command itself runs to
 * its end: a listing still hands its letters back, a send still finishes its batch, and the exit
 * code is the command's own. Installed once, by cli/main.ts, for every command.
 */
export function quietOnClosedPipes(streams: readonly NodeJS.WriteStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
      // Later writes go nowhere (and raise nothing); callbacks still run so awaiting writers go on.
      stream.write = ((_chunk: unknown, encoding?: unknown, cb?: unknown) => {
        const done = typeof encoding === 'function' ? encoding : cb;
        if (typeof done === 'function') process.nextTick(done as () => void);
        return true;
      }) as typeof stream.write;
    });
  }
}

/** `export NAME=value` for a POSIX shell, the value quoted when it needs to be. */
export function shellExport(name: string, value: string): string {
  return `export ${name}=${/^[\w@%+=:,./-]*$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`}`;
}
