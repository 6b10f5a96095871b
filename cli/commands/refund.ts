import type { Command } from 'commander';
import type { Refund } from '../../workers/refund/refund.js';
import type { OutboxEvent } from '../../workers/ledger/ports.js';
import { money, printHistoryAndEvents, printJson, printTable, reportEvents, type ReportEvent } from './output.js';

/** Same codes as cli/main.ts EXIT (kept literal here to avoid importing the CLI entrypoint). */
const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

/** What `payfleet refund <refundId> --json` prints. */
export interface RefundReport {
  readonly refundId: string;
  readonly chargeId: string;
  readonly status: string;
  readonly final: boolean;
  readonly amount: number;
  readonly currency: string;
  readonly processor: string;
  readonly refundRequestId: string;
  readonly reference: string | null;
  readonly refundRef: string | null;
  readonly errorCode: string | null;
  readonly processorCode: string | null;
  readonly errorMessage: string | null;
  readonly requestedAt: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly version: number;
  readonly history: readonly { readonly status: string; readonly at: string }[];
  readonly events: readonly ReportEvent[];
}

/** One line of a charge's refunds (in `payfleet charge`). */
export interface RefundLine {
  readonly refundId: string;
  readonly status: string;
  readonly amount: number;
  readonly createdAt: string;
}

export const refundLine = (r: Refund): RefundLine => ({
  refundId: r.refundId,
  status: r.status,
  amount: r.amount,
  createdAt: r.createdAt,
});

export function refundReport(r: Refund, events: readonly OutboxEvent[]): RefundReport {
  return {
    refundId: r.refundId,
    chargeId: r.chargeId,
    status: r.status,
    final: r.status === 'REFUNDED' || r.status === 'REFUND_ERROR',
    amount: r.amount,
    currency: r.currency,
    processor: r.processor,
    refundRequestId: r.refundRequestId,
    reference: r.reference ?? null,
    refundRef: r.refundRef ?? null,
    errorCode: r.errorCode ?? null,
    processorCode: r.processorCode ?? null,
    errorMessage: r.errorMessage ?? null,
    requestedAt: r.requestedAt,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    version: r.version,
    history: r.history.map((h) => ({ status: h.status, at: h.at })),
    events: reportEvents(events),
  };
}

function printReport(r: RefundReport): void {
  printTable(
    ['field', 'value'],
    [
      ['refundId', r.refundId],
      ['charge', r.chargeId],
      ['status', `${r.status}${r.final ? ' (final)' : ''}`],
      ['amount', money(r.amount, r.currency)],
      ['processor', r.processor],
      ['processor refund ref', r.refundRef],
      ['refund request', r.refundRequestId],
      ['reference', r.reference],
      ['error code', r.errorCode],
      ['processor code', r.processorCode],
      ['error', r.errorMessage],
      ['requested', r.requestedAt],
      ['created', r.createdAt],
      ['updated', r.updatedAt],
    ].filter(([, v]) => v !== null && v !== undefined),
  );
  printHistoryAndEvents(r.history, r.events);
}

/** `payfleet refund <refundId> [--json]`: a refund's status, amount, charge, history and ledger events (exit 3 when unknown). */
export function registerRefund(program: Command): void {
  program
    .command('refund')
    .description("a refund's status, amount, charge, processor reference, history and ledger events")
    .argument('<refundId>', 'the refundId of the RefundRequested message')
    .option('--json', 'print JSON')
    .action(async (refundId: string, opts: { json?: boolean }) => {
      // Loaded here, not at CLI start: `payfleet --help` must not pay for the AWS SDK.
      const [{ openCommandContext }, { createRefundRepository }, { createDynamoLedgerOutbox }] = await Promise.all([
        import('./context.js'),
        import('../../workers/refund/repo.js'),
        import('../../workers/ledger/dynamo-outbox.js'),
      ]);
      const { clients, names } = openCommandContext();
      try {
        const refund = await createRefundRepository(clients.doc, names.table('refunds')).get(refundId);
        if (!refund) {
          throw Object.assign(
            new Error(
              `no refund ${refundId} (a refund exists once its RefundRequested was accepted; see \`payfleet dlq list refund-requests\`)`,
            ),
            { exitCode: EXIT.notFound },
          );
        }
        const events = await createDynamoLedgerOutbox({ doc: clients.doc, names }).resourceEvents(refundId);
        const report = refundReport(refund, events);
        if (opts.json) printJson(report);
        else printReport(report);
      } finally {
        clients.destroy();
      }
    });
}
