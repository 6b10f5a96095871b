import type { Command } from 'commander';
import { captureAttemptsFromHistory, TERMINAL_STATUSES, type Charge } from '../../shared/charges/charge.js';
import type { OutboxEvent } from '../../workers/ledger/ports.js';
import type { Refund } from '../../workers/refund/refund.js';
import { money, printHistoryAndEvents, printJson, printTable, reportEvents, type ReportEvent } from './output.js';
import { refundLine, type RefundLine } from './refund.js';

/** Same codes as cli/main.ts EXIT (kept literal here to avoid importing the CLI entrypoint). */
const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

/** What `payfleet charge <chargeId> --json` prints: stored fields by allow-list (card data is only ever last4 and brand). */
export interface ChargeReport {
  readonly chargeId: string;
  readonly status: string;
  readonly final: boolean;
  readonly processor: string;
  readonly amount: number;
  readonly currency: string;
  readonly gatewayAccountId: string;
  readonly reference: string;
  readonly description: string;
  readonly live: boolean;
  readonly processorRef: string | null;
  readonly card: { readonly brand: string | null; readonly last4: string | null };
  readonly declineCode: string | null;
  readonly errorCode: string | null;
  /** The void of an authorisation for another amount: PENDING, VOIDED or FAILED (with the processor's code). */
  readonly authorisationVoid: {
    readonly state: string;
    readonly processorRef: string;
    readonly code: string | null;
    readonly settledAt: string | null;
  } | null;
  readonly authRequestId: string | null;
  readonly captureRequestId: string | null;
  readonly captureAttempts: number;
  /** When it entered the awaiting-capture index, if it is waiting for a capture. */
  readonly awaitingCaptureSince: string | null;
  /** Minor units of its refunds not in REFUND_ERROR (submitted or refunded), and what is left to refund. */
  readonly refundedAmount: number;
  readonly refundAvailable: number;
  /** Its refunds, oldest first (`payfleet refund <refundId>` for one). */
  readonly refunds: readonly RefundLine[];
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly version: number;
  readonly history: readonly { readonly status: string; readonly at: string }[];
  readonly events: readonly ReportEvent[];
}

/** Build the report from the stored charge, its outbox events and its refunds. */
export function chargeReport(c: Charge, events: readonly OutboxEvent[], refunds: readonly Refund[] = []): ChargeReport {
  const stored = c as Charge & { captureQueue?: string; captureDueAt?: string };
  return {
    chargeId: c.chargeId,
    status: c.status,
    final: TERMINAL_STATUSES.has(c.status),
    processor: c.processor,
    amount: c.amount,
    currency: c.currency,
    gatewayAccountId: c.gatewayAccountId,
    reference: c.reference,
    description: c.description,
    live: c.live,
    processorRef: c.processorRef ?? null,
    card: { brand: c.cardBrand ?? null, last4: c.cardLast4 ?? null },
    declineCode: c.declineCode ?? null,
    errorCode: c.errorCode ?? null,
    authorisationVoid: c.authorisationVoid
      ? {
          state: c.authorisationVoid.state,
          processorRef: c.authorisationVoid.processorRef,
          code: c.authorisationVoid.code ?? null,
          settledAt: c.authorisationVoid.settledAt ?? null,
        }
      : null,
    authRequestId: c.authRequestId ?? null,
    captureRequestId: c.captureRequestId ?? null,
    captureAttempts: captureAttemptsFromHistory(c.history),
    awaitingCaptureSince: stored.captureQueue ? (stored.captureDueAt ?? null) : null,
    refundedAmount: c.refundedAmount ?? 0,
    refundAvailable: c.amount - (c.refundedAmount ?? 0),
    refunds: refunds.map(refundLine),
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
    version: c.version,
    history: c.history.map((h) => ({ status: h.status, at: h.at })),
    events: reportEvents(events),
  };
}

function printReport(r: ChargeReport): void {
  printTable(
    ['field', 'value'],
    [
      ['chargeId', r.chargeId],
      ['status', `${r.status}${r.final ? ' (final)' : ''}`],
      ['amount', money(r.amount, r.currency)],
      ['processor', r.processor],
      ['processor ref', r.processorRef],
      ['card', r.card.last4 ? `${r.card.brand ?? 'card'} ending ${r.card.last4}` : null],
      ['gateway account', r.gatewayAccountId],
      ['reference', r.reference],
      ['description', r.description],
      ['decline code', r.declineCode],
      ['error code', r.errorCode],
      [
        'void',
        r.authorisationVoid
          ? `${r.authorisationVoid.state} (ref ${r.authorisationVoid.processorRef}${r.authorisationVoid.code ? `, ${r.authorisationVoid.code}` : ''})`
          : null,
      ],
      ['auth request', r.authRequestId],
      ['capture request', r.captureRequestId],
      ['capture attempts', r.captureAttempts || null],
      ['awaiting capture since', r.awaitingCaptureSince],
      ['refunded', r.refundedAmount > 0 ? `${money(r.refundedAmount, r.currency)}; ${r.refundAvailable} left` : null],
      ['created', r.createdAt],
      ['updated', r.updatedAt],
      ['live', r.live],
    ].filter(([, v]) => v !== null && v !== undefined),
  );
  printHistoryAndEvents(r.history, r.events);
  if (r.refunds.length > 0) {
    process.stdout.write('\nrefunds:\n');
    printTable(
      ['refundId', 'status', 'amount', 'created'],
      r.refunds.map((x) => [x.refundId, x.status, x.amount, x.createdAt]),
    );
  }
}

/** `payfleet charge <chargeId> [--json]`: a charge's state, amounts, history, processor ref and ledger events (exit 3 when unknown). */
export function registerCharge(program: Command): void {
  program
    .command('charge')
    .description("a charge's status, amount, processor reference, history and ledger events (card: brand and last 4 digits only)")
    .argument('<chargeId>', 'the chargeId of the AuthorisationRequested message')
    .option('--json', 'print JSON')
    .action(async (chargeId: string, opts: { json?: boolean }) => {
      // Loaded here, not at CLI start: `payfleet --help` must not pay for the AWS SDK.
      const [{ openCommandContext }, { createChargeRepository }, { createDynamoLedgerOutbox }, { createRefundRepository }] = await Promise.all([
        import('./context.js'),
        import('../../shared/charges/repo.js'),
        import('../../workers/ledger/dynamo-outbox.js'),
        import('../../workers/refund/repo.js'),
      ]);
      const { clients, names } = openCommandContext();
      try {
        const charge = await createChargeRepository(clients.doc, names.table('charges')).get(chargeId);
        if (!charge) {
          throw Object.assign(
            new Error(
              `no charge ${chargeId} (a charge exists once its first AuthorisationRequested was accepted; see \`payfleet dlq list auth-requests\`)`,
            ),
            { exitCode: EXIT.notFound },
          );
        }
        const [events, refunds] = await Promise.all([
          createDynamoLedgerOutbox({ doc: clients.doc, names }).resourceEvents(chargeId),
          createRefundRepository(clients.doc, names.table('refunds')).listByCharge(chargeId),
        ]);
        const report = chargeReport(charge, events, refunds);
        if (opts.json) printJson(report);
        else printReport(report);
      } finally {
        clients.destroy();
      }
    });
}
