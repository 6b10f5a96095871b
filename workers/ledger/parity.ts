/**
 * Parity: compare the outbox (what the fleet committed) with what a Ledger consumer recorded
 * (NDJSON, one CONTRACT §5 body per line in the order received — or an SQS message with a `Body`).
 *
 *   missing      emitted in the outbox, never recorded             -> the fleet lost it (or the consumer did)
 *   pending      still pending in the outbox and not recorded      -> not a fault yet; see emission lag
 *   extra        recorded, but no such event_id in the outbox, or the body differs from the outbox row
 *   outOfOrder   recorded after a higher sequence of its resource  -> order broken
 *   duplicates   the same event_id recorded twice                  -> allowed (at-least-once), counted
 *   invalid      a line that is not JSON or not a §5 body
 */
import { z } from 'zod';
import { toLedgerMessage, type LedgerMessage } from '../../shared/core/outbox.js';
import type { OutboxEvent } from './ports.js';

/** docs/contract.md §5 (the parity command's reading of it; the test oracle keeps its own copy). */
export const LedgerMessageSchema = z.object({
  event_id: z.string().min(1),
  resource_type: z.enum(['payment', 'refund', 'payout']),
  resource_external_id: z.string().min(1),
  parent_resource_external_id: z.string().min(1).optional(),
  sequence: z.number().int().min(1),
  event_type: z.string().regex(/^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$/),
  timestamp: z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(?:Z|[+-]\d{2}:\d{2})$/),
  gateway_account_id: z.string().optional(),
  live: z.boolean(),
  event_details: z.record(z.string(), z.unknown()),
});

export interface RecordedLine {
  readonly line: number;
  readonly body?: LedgerMessage;
  readonly problems?: readonly string[];
}

/** Parse NDJSON text into recorded lines (blank lines skipped). */
export function parseRecorded(text: string): RecordedLine[] {
  const out: RecordedLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(raw);
      // An SQS message as the CLI or an SDK dump prints it: the body is a JSON string inside.
      const inner = (json as { Body?: unknown; body?: unknown } | null) ?? {};
      const wrapped = typeof inner.Body === 'string' ? inner.Body : typeof inner.body === 'string' ? inner.body : undefined;
      if (wrapped !== undefined) json = JSON.parse(wrapped);
    } catch {
      out.push({ line, problems: ['not JSON'] });
      return;
    }
    const r = LedgerMessageSchema.safeParse(json);
    if (r.success) out.push({ line, body: r.data as LedgerMessage });
    else out.push({ line, problems: r.error.issues.map((x) => `${x.path.join('.') || '(body)'}: ${x.message}`) });
  });
  return out;
}

export interface ParityReport {
  readonly ok: boolean;
  readonly resources: number;
  readonly outboxEvents: number;
  readonly recordedLines: number;
  readonly recordedUnique: number;
  readonly missing: readonly { resourceId: string; sequence: number; eventId: string }[];
  readonly pending: readonly { resourceId: string; sequence: number; eventId: string }[];
  readonly extra: readonly { line: number; resourceId: string; sequence: number; eventId: string; reason: string }[];
  readonly outOfOrder: readonly { line: number; resourceId: string; sequence: number; after: number }[];
  readonly duplicates: number;
  readonly invalid: readonly { line: number; problems: readonly string[] }[];
}

/** `outbox`: every event of every resource to compare, by resource id (ascending sequences). */
export function compareParity(
  outbox: ReadonlyMap<string, readonly OutboxEvent[]>,
  recorded: readonly RecordedLine[],
): ParityReport {
  const byId = new Map<string, OutboxEvent>();
  for (const events of outbox.values()) for (const e of events) byId.set(e.eventId, e);
  const seen = new Set<string>();
  const highest = new Map<string, number>();
  const extra: ParityReport['extra'][number][] = [];
  const outOfOrder: ParityReport['outOfOrder'][number][] = [];
  const invalid: ParityReport['invalid'][number][] = [];
  let duplicates = 0;
  for (const r of recorded) {
    if (!r.body) {
      invalid.push({ line: r.line, problems: r.problems ?? [] });
      continue;
    }
    const b = r.body;
    if (seen.has(b.event_id)) {
      duplicates++;
      continue;
    }
    seen.add(b.event_id);
    const stored = byId.get(b.event_id);
    const where = { line: r.line, resourceId: b.resource_external_id, sequence: b.sequence, eventId: b.event_id };
    if (!stored) extra.push({ ...where, reason: 'no such event_id in the outbox' });
    else if (canonical(toLedgerMessage(stored)) !== canonical(b))
      extra.push({ ...where, reason: 'body differs from the outbox row' });
    const top = highest.get(b.resource_external_id) ?? 0;
    if (b.sequence < top) outOfOrder.push({ line: r.line, resourceId: b.resource_external_id, sequence: b.sequence, after: top });
    else highest.set(b.resource_external_id, b.sequence);
  }
  const missing: ParityReport['missing'][number][] = [];
  const pending: ParityReport['pending'][number][] = [];
  let outboxEvents = 0;
  for (const events of outbox.values()) {
    for (const e of events) {
      outboxEvents++;
      if (seen.has(e.eventId)) continue;
      const row = { resourceId: e.resourceId, sequence: e.sequence, eventId: e.eventId };
      if (e.pendingShard !== undefined) pending.push(row);
      else missing.push(row);
    }
  }
  return {
    ok: missing.length === 0 && extra.length === 0 && outOfOrder.length === 0 && invalid.length === 0,
    resources: outbox.size,
    outboxEvents,
    recordedLines: recorded.length,
    recordedUnique: seen.size,
    missing,
    pending,
    extra,
    outOfOrder,
    duplicates,
    invalid,
  };
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
