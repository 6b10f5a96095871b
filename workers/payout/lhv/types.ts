/**
 * Types shared by the LHV Connect client, the ISO 20022 codecs (pain.001 / pain.002) and the local
 * LHV sandbox. Nothing here touches the network; see docs/lhv.md for the API as we use it.
 */
import { TerminalError } from '../../../shared/errors.js';

/** XML namespace of the payment initiation we send (docs/contract.md §7). */
export const PAIN001_NS = 'urn:iso:std:iso:20022:tech:xsd:pain.001.001.09';
/** XML namespace of the status report LHV answers a pain.001.001.09 with. */
export const PAIN002_NS = 'urn:iso:std:iso:20022:tech:xsd:pain.002.001.10';

/** docs/contract.md §7: at most 100 payouts per initiation request (LHV itself allows 1500). */
export const MAX_TRANSACTIONS_PER_INITIATION = 100;

/** The only currency the payout flow sends (SEPA credit transfers). */
export type PayoutCurrency = 'EUR';

/** The paying account: ours, from configuration, never from a message. */
export interface DebtorAccount {
  /** Account holder name as registered at LHV (Max70Text after cleaning). */
  readonly name: string;
  readonly iban: string;
  /** LHV's BIC, e.g. `LHVBEE22`. */
  readonly bic: string;
}

/** One payout inside a batch; built from a `CheckoutApprovalAccepted` event (docs/contract.md §2). */
export interface PayoutInstruction {
  /**
   * The payout's id. Sent as `InstrId` and `EndToEndId` (via {@link toEndToEndId}) so every pain.002
   * transaction status can be matched back to exactly one payout.
   */
  readonly paymentId: string;
  /** Integer minor units, > 0. */
  readonly amount: number;
  readonly currency: PayoutCurrency;
  readonly creditor: {
    readonly name: string;
    readonly iban: string;
    /** Optional for SEPA (IBAN-only); sent as `CdtrAgt/FinInstnId/BICFI` when present. */
    readonly bic?: string;
  };
  /** Free text for the beneficiary; cleaned to the SEPA character set and cut to 140 chars. */
  readonly remittanceInformation?: string;
}

/** Input of {@link buildPain001}. */
export interface Pain001Batch {
  /**
   * The batch's idempotency key: `GrpHdr/MsgId` and the `X-Idempotency-Key` header. Reused on every
   * retry of this batch. Max35Text, so a UUID must be in its 32-hex form (see `newBatchIdempotencyKey`).
   */
  readonly msgId: string;
  readonly debtor: DebtorAccount;
  /** `InitgPty/Nm`. @default debtor.name */
  readonly initiatingPartyName?: string;
  /** `ReqdExctnDt/Dt`, `YYYY-MM-DD`. @default today (UTC) */
  readonly requestedExecutionDate?: string;
  /** `GrpHdr/CreDtTm`. @default now */
  readonly createdAt?: Date;
  readonly payouts: readonly PayoutInstruction[];
}

/** One credit transfer as read back from a pain.001 (what the bank sees). */
export interface Pain001Transaction {
  readonly instrId: string | undefined;
  readonly endToEndId: string;
  /** Integer minor units, converted from the decimal `InstdAmt`. */
  readonly amount: number;
  readonly currency: string;
  readonly creditorName: string;
  readonly creditorIban: string;
  readonly creditorBic: string | undefined;
  readonly remittanceInformation: string | undefined;
}

/** A parsed pain.001: enough for the sandbox bank to act on it. */
export interface ParsedPain001 {
  readonly msgId: string;
  readonly createdAt: string;
  readonly nbOfTxs: number;
  /** Control sum in minor units. */
  readonly ctrlSum: number | undefined;
  readonly initiatingPartyName: string | undefined;
  readonly paymentInformationId: string;
  readonly requestedExecutionDate: string;
  readonly debtor: { readonly name: string; readonly iban: string; readonly bic: string | undefined };
  readonly transactions: readonly Pain001Transaction[];
}

/**
 * ISO 20022 status codes LHV uses in pain.002. Group level: RJCT, PDNG, PART, ACSP, ACSC (+ ACCP,
 * ACTC from the standard). Transaction level: RJCT, PDNG, ACSP, ACSC, ACWC, ACCP. Open-ended so a
 * new code from the bank is carried through rather than rejected.
 */
export type PaymentStatusCode = 'ACCP' | 'ACSC' | 'ACSP' | 'ACTC' | 'ACWC' | 'PART' | 'PDNG' | 'RCVD' | 'RJCT' | (string & {});

/** Codes after which a transaction's status never changes (RJCT: rejected; ACSC: debited). */
export const FINAL_TRANSACTION_STATUSES: ReadonlySet<string> = new Set(['ACSC', 'RJCT']);

/** One transaction status from a pain.002. */
export interface TransactionStatus {
  /** `OrgnlEndToEndId`: the payout's end-to-end id (= paymentId, see {@link toEndToEndId}). */
  readonly endToEndId: string;
  readonly instrId: string | undefined;
  readonly status: PaymentStatusCode;
  /** ISO external status reason code, e.g. `AC04` (closed account), `AM04` (insufficient funds). */
  readonly reasonCode?: string;
  /** `StsRsnInf/AddtlInf` lines joined with a space. */
  readonly reasonText?: string;
}

/** A parsed pain.002 CustomerPaymentStatusReport. */
export interface Pain002Report {
  readonly msgId: string;
  readonly createdAt: string | undefined;
  /** `OrgnlGrpInfAndSts/OrgnlMsgId`: the MsgId (idempotency key) of the pain.001 this answers. */
  readonly originalMsgId: string;
  /** Only in the first report for a request (LHV docs); later reports carry transactions only. */
  readonly groupStatus: PaymentStatusCode | undefined;
  readonly groupReasonCode?: string;
  readonly groupReasonText?: string;
  readonly transactions: readonly TransactionStatus[];
}

/** Input of the pain.002 builder (used by the sandbox bank). */
export interface Pain002Input {
  readonly msgId: string;
  readonly createdAt?: Date;
  readonly originalMsgId: string;
  readonly originalPaymentInformationId?: string;
  readonly groupStatus?: PaymentStatusCode;
  /** Group-level `StsRsnInf` (e.g. a whole-request rejection). */
  readonly groupReasonCode?: string;
  readonly groupReasonText?: string;
  readonly transactions: readonly TransactionStatus[];
}

/** `Message-Response-Type` values of LHV Connect messages (open-ended). */
export type LhvResponseType = 'PAYMENT' | 'HEARTBEAT' | 'CREDIT_DEBIT_NOTIFICATION' | 'ACCOUNT_STATEMENT' | (string & {});

/** One message from `GET /messages/next`. */
export interface LhvMessage {
  /** Correlates the message with the request that caused it (the 202's `Message-Request-Id`). */
  readonly messageRequestId: string;
  /** Identifies the message itself; pass to `deleteMessage` once processed. */
  readonly messageResponseId: string;
  readonly responseType: LhvResponseType;
  readonly contentType: string | undefined;
  /** Raw body (pain.002 XML for PAYMENT, HeartBeatResponse XML for HEARTBEAT). */
  readonly body: string;
}

/** Counters of the LHV sandbox (`GET /__sandbox/stats`); the oracle of the no-double-effect tests. */
export interface LhvSandboxStats {
  /** Every non-admin request received (faulted ones included). */
  readonly requests: number;
  /** Requests by `METHOD /route`, e.g. `POST /payment`. */
  readonly byRoute: Readonly<Record<string, number>>;
  /** Distinct MsgIds accepted (new initiations). */
  readonly initiations: number;
  /** EndToEndId (= paymentId) -> number of accepted initiations that contained it. Must stay <= 1. */
  readonly initiationsPerPaymentId: Readonly<Record<string, number>>;
  /** POST /payment with an already accepted MsgId: answered 202 with the original id, nothing done. */
  readonly duplicatesDeduplicated: number;
  /** Of those, how many carried a different body than the original (a client bug). */
  readonly conflictingDuplicates: number;
  /** POST /payment answered 400 (invalid XML/namespace/size/IBAN, key mismatch). */
  readonly invalidRequests: number;
  readonly messagesQueued: number;
  /** 200 answers of /messages/next (a message can be delivered more than once until deleted). */
  readonly messagesDelivered: number;
  readonly messagesDeleted: number;
  /** Deleted messages by `Message-Response-Type` (`PAYMENT`, `HEARTBEAT`). */
  readonly messagesDeletedByType: Readonly<Record<string, number>>;
  /** Queued and not yet deleted (visible or not). */
  readonly pendingMessages: number;
  /** The same by `Message-Response-Type`: e.g. `HEARTBEAT` messages nobody has read back and deleted. */
  readonly pendingMessagesByType: Readonly<Record<string, number>>;
  /** faults.ts counters by kind (`none`, `5xx`, `429`, `reset`, `timeoutAfterSuccess`, `resetAfterSuccess`). */
  readonly faultsInjected: Readonly<Record<string, number>>;
}

/** One initiation accepted by the LHV sandbox (`GET /__sandbox/initiations`). */
export interface LhvSandboxInitiation {
  readonly msgId: string;
  readonly messageRequestId: string;
  readonly endToEndIds: readonly string[];
  readonly acceptedAt: string;
}

/** Error codes of this integration (`PayfleetError.code`). */
export const LhvErrorCode = {
  /** The batch or one payout cannot be sent: bad IBAN, amount, size... Fix the data. */
  InvalidPayout: 'INVALID_PAYOUT',
  /** LHV answered 4xx: our request is wrong or not allowed. */
  RequestRejected: 'LHV_REQUEST_REJECTED',
  /** 429. */
  Throttled: 'LHV_THROTTLED',
  /** 5xx. */
  Unavailable: 'LHV_UNAVAILABLE',
  /** Connection failed before the request could be sent (refused, DNS, connect timeout, TLS). */
  Unreachable: 'LHV_UNREACHABLE',
  /** The request went out and no usable answer came back: the bank may have acted on it. */
  OutcomeUnknown: 'LHV_OUTCOME_UNKNOWN',
  /** A body from LHV we cannot read (bad XML, wrong namespace). */
  BadResponse: 'LHV_BAD_RESPONSE',
} as const;

/** A TerminalError from an HTTP answer; carries the status and a short reason safe to log/store. */
export class LhvRequestRejectedError extends TerminalError {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, operation: string) {
    super(LhvErrorCode.RequestRejected, `LHV ${operation} rejected with HTTP ${status}: ${reason}`);
    this.status = status;
    this.reason = reason;
  }
}

/** Throw a TerminalError with code `INVALID_PAYOUT`; `reason` must already be masked. */
export function invalidPayout(reason: string): never {
  throw new TerminalError(LhvErrorCode.InvalidPayout, reason);
}

/**
 * Mask every IBAN-shaped token in `text` to its last four characters (`****1234`). Used on any text
 * that may reach logs, error messages, DLQ attributes or tables.
 */
export function maskIbans(text: string): string {
  return text.replace(/\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g, (m) => {
    const compact = m.replace(/ /g, '');
    return `****${compact.slice(-4)}`;
  });
}

/** Mask one IBAN to its last four characters, whatever its shape. */
export function maskIban(iban: string): string {
  const compact = iban.replace(/\s/g, '');
  return `****${compact.slice(-4)}`;
}
