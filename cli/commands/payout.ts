import type { Command } from 'commander';
import { maskIban } from '../../workers/payout/lhv/types.js';
import type { Batch, Payout } from '../../workers/payout/model.js';
import type { PayoutRepository } from '../../workers/payout/repo.js';
import { printJson, printTable, reportEvents, type ReportEvent } from './output.js';

/** Same codes as cli/main.ts EXIT (kept literal here to avoid importing the CLI entrypoint). */
const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

/** What `payfleet payout <paymentId> --json` prints. IBANs are shown as their last four characters. */
export interface PayoutReport {
  readonly payout: Record<string, unknown>;
  readonly batch: Record<string, unknown> | null;
  readonly events: readonly ReportEvent[];
}

export interface PayoutReadDeps {
  readonly repo: PayoutRepository;
  readonly events: (
    paymentId: string,
  ) => Promise<
    readonly {
      sequence: number;
      eventType: string;
      timestamp: string;
      emittedAt?: string;
      eventId: string;
      details: Record<string, unknown>;
    }[]
  >;
}

function maskedPayout(p: Payout): Record<string, unknown> {
  const { version, eventSeq, creditor, ...rest } = p;
  return { ...rest, creditor: { ...creditor, iban: maskIban(creditor.iban) }, version, eventSeq };
}

/** The payout, its batch and its ledger events; undefined when no payout has this paymentId. */
export async function describePayout(deps: PayoutReadDeps, paymentId: string): Promise<PayoutReport | undefined> {
  const payout = await deps.repo.findPayout(paymentId);
  if (!payout) return undefined;
  const batch: Batch | undefined = payout.batchId ? await deps.repo.getBatch(payout.batchId) : undefined;
  const events = await deps.events(paymentId);
  return {
    payout: maskedPayout(payout),
    batch: batch
      ? { ...batch, size: batch.paymentIds.length, paymentIds: batch.paymentIds.length <= 10 ? batch.paymentIds : undefined }
      : null,
    events: reportEvents(events),
  };
}

function amount(minor: number, currency: string): string {
  return `${(minor / 100).toFixed(2)} ${currency}`;
}

function printReport(r: PayoutReport): void {
  const p = r.payout as unknown as Payout;
  const failure = p.failure ? `${p.failure.source} ${p.failure.code}: ${p.failure.reason}` : undefined;
  printTable(
    ['field', 'value'],
    [
      ['paymentId', p.paymentId],
      ['status', p.status],
      ['amount', amount(p.amount, p.currency)],
      ['creditor', `${p.creditor.name} ${p.creditor.iban}${p.creditor.bic ? ` ${p.creditor.bic}` : ''}`],
      ['shard', p.shard],
      ['received', p.receivedAt],
      ['batch (idempotency key)', p.batchId],
      [
        'batch status',
        r.batch
          ? `${String(r.batch.status)} (${String(r.batch.size)} payouts, sent ${String(r.batch.sendAttempts)}x)`
          : undefined,
      ],
      ['Message-Request-Id', p.messageRequestId],
      ['bank status', p.bankStatus],
      ['failure', failure],
      ['source event', p.eventId],
    ].filter(([, v]) => v !== undefined),
  );
  process.stdout.write('\n');
  printTable(
    ['status', 'at'],
    p.history.map((h) => [h.status, h.at]),
  );
  process.stdout.write('\n');
  printTable(
    ['seq', 'event_type', 'timestamp', 'emitted', 'event_id'],
    r.events.map((e) => [e.sequence, e.eventType, e.timestamp, e.emitted ? 'yes' : 'pending', e.eventId]),
  );
  if (p.status === 'REJECTED') {
    process.stdout.write('\nREJECTED: no money left the account for this payout. See docs/payouts.md "REJECTED payouts".\n');
  }
}

/** `payfleet payout <paymentId> [--json]`: a payout's state, its batch and its ledger events (exit 3 when unknown). */
export function registerPayout(program: Command): void {
  program
    .command('payout')
    .description("a payout's status, history, batch (idempotency key, Message-Request-Id) and ledger events")
    .argument('<paymentId>', 'the paymentId of the CheckoutApprovalAccepted event')
    .option('--json', 'print JSON')
    .action(async (paymentId: string, opts: { json?: boolean }) => {
      // Loaded here, not at CLI start: `payfleet --help` must not pay for the AWS SDK.
      const [{ openCommandContext }, { createPayoutRepository }, { createDynamoLedgerOutbox }] = await Promise.all([
        import('./context.js'),
        import('../../workers/payout/repo.js'),
        import('../../workers/ledger/dynamo-outbox.js'),
      ]);
      const { clients, names } = openCommandContext();
      try {
        const outbox = createDynamoLedgerOutbox({ doc: clients.doc, names });
        const report = await describePayout(
          { repo: createPayoutRepository(clients.doc, names), events: (id) => outbox.resourceEvents(id) },
          paymentId,
        );
        if (!report) throw Object.assign(new Error(`no payout ${paymentId}`), { exitCode: EXIT.notFound });
        if (opts.json) printJson(report);
        else printReport(report);
      } finally {
        clients.destroy();
      }
    });
}
