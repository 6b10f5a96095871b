/**
 * ISO 20022 pain.002.001.10 (CustomerPaymentStatusReport): what LHV answers a pain.001.001.09 with,
 * as a PAYMENT message on `GET /messages/next`. The parser is what the payout worker uses; the
 * builder is for the sandbox bank.
 *
 *   Document/CstmrPmtStsRpt
 *     GrpHdr: MsgId, CreDtTm
 *     OrgnlGrpInfAndSts: OrgnlMsgId (= our batch MsgId), OrgnlMsgNmId, GrpSts?, StsRsnInf*
 *     OrgnlPmtInfAndSts*: OrgnlPmtInfId, PmtInfSts?,
 *       TxInfAndSts*: OrgnlInstrId?, OrgnlEndToEndId (= paymentId), TxSts, StsRsnInf*(Rsn/Cd, AddtlInf*)
 *
 * LHV may send several reports for one request (group status only in the first one) and several
 * statuses for one payment (e.g. ACSP then ACSC). Callers must treat each report as an update,
 * apply only FINAL_TRANSACTION_STATUSES as outcomes, and be idempotent per (endToEndId, status).
 */
import { TerminalError } from '../../../shared/errors.js';
import { child, children, parseIsoDocument, text, xmlEscape, type XmlNode } from './pain001.js';
import { LhvErrorCode, PAIN002_NS, type Pain002Input, type Pain002Report, type TransactionStatus } from './types.js';

/** Reason code and text from a list of `StsRsnInf` elements (first code; all AddtlInf lines). */
function reasonOf(node: XmlNode | undefined): { reasonCode?: string; reasonText?: string } {
  const infos = children(node, 'StsRsnInf');
  let reasonCode: string | undefined;
  const lines: string[] = [];
  for (const info of infos) {
    reasonCode ??= text(info, 'Rsn', 'Cd') ?? text(info, 'Rsn', 'Prtry');
    for (const line of children(info, 'AddtlInf')) {
      const t = line['#text'];
      if (typeof t === 'string' && t !== '') lines.push(t);
    }
  }
  return {
    ...(reasonCode !== undefined ? { reasonCode } : {}),
    ...(lines.length > 0 ? { reasonText: lines.join(' ') } : {}),
  };
}

/**
 * Parse a pain.002.001.10 status report.
 * @throws TerminalError code `LHV_BAD_RESPONSE` when the XML is malformed, in another namespace, or
 *   lacks OrgnlMsgId / a transaction's OrgnlEndToEndId or TxSts. Such a message cannot be matched to
 *   any payout; the caller should alert and keep it (not delete it) for a human.
 */
export function parsePain002(xml: string): Pain002Report {
  const code = LhvErrorCode.BadResponse;
  const msg = parseIsoDocument(xml, PAIN002_NS, 'CstmrPmtStsRpt', code);
  const hdr = child(msg, 'GrpHdr');
  const grp = child(msg, 'OrgnlGrpInfAndSts');
  const originalMsgId = text(grp, 'OrgnlMsgId');
  if (!originalMsgId) throw new TerminalError(code, 'pain.002 without OrgnlGrpInfAndSts/OrgnlMsgId');
  const transactions: TransactionStatus[] = [];
  for (const pmt of children(msg, 'OrgnlPmtInfAndSts')) {
    for (const tx of children(pmt, 'TxInfAndSts')) {
      const endToEndId = text(tx, 'OrgnlEndToEndId');
      const status = text(tx, 'TxSts');
      if (!endToEndId || !status) throw new TerminalError(code, 'pain.002 TxInfAndSts without OrgnlEndToEndId or TxSts');
      transactions.push({ endToEndId, instrId: text(tx, 'OrgnlInstrId'), status, ...reasonOf(tx) });
    }
  }
  const groupStatus = text(grp, 'GrpSts');
  const groupReason = reasonOf(grp);
  return {
    msgId: text(hdr, 'MsgId') ?? '',
    createdAt: text(hdr, 'CreDtTm'),
    originalMsgId,
    groupStatus,
    ...(groupReason.reasonCode !== undefined ? { groupReasonCode: groupReason.reasonCode } : {}),
    ...(groupReason.reasonText !== undefined ? { groupReasonText: groupReason.reasonText } : {}),
    transactions,
  };
}

/** ISO status reasons meaning "this request repeats an earlier one" (DU01 duplicate MsgId, AM05, DUPL). */
const DUPLICATE_REASONS = new Set(['DU01', 'AM05', 'DUPL']);

/**
 * True for a whole-request rejection because the MsgId was already used. It says nothing about the
 * payouts of the ORIGINAL request (their statuses come in that request's own reports): never mark
 * payouts REJECTED on the strength of it.
 */
export function isDuplicateRejection(report: Pain002Report): boolean {
  return report.groupStatus === 'RJCT' && report.groupReasonCode !== undefined && DUPLICATE_REASONS.has(report.groupReasonCode);
}

/**
 * Group status for a set of transaction statuses, following LHV's rules: all rejected -> RJCT,
 * some rejected -> PART, all debited -> ACSC, otherwise ACSP (accepted, not yet debited).
 */
export function groupStatusOf(statuses: readonly string[]): string {
  const rejected = statuses.filter((s) => s === 'RJCT').length;
  if (statuses.length > 0 && rejected === statuses.length) return 'RJCT';
  if (rejected > 0) return 'PART';
  if (statuses.every((s) => s === 'ACSC')) return 'ACSC';
  return 'ACSP';
}

function statusReasonXml(reasonCode: string | undefined, reasonText: string | undefined): string {
  if (reasonCode === undefined && reasonText === undefined) return '';
  const rsn = reasonCode !== undefined ? `<Rsn><Cd>${xmlEscape(reasonCode)}</Cd></Rsn>` : '';
  // AddtlInf is Max105Text.
  const add = reasonText !== undefined ? `<AddtlInf>${xmlEscape(reasonText.slice(0, 105))}</AddtlInf>` : '';
  return `<StsRsnInf>${rsn}${add}</StsRsnInf>`;
}

/**
 * Build a pain.002.001.10 report (sandbox use). Omit `groupStatus` to produce a follow-up report
 * (LHV sends GrpSts/PmtInfSts only in the first report for a request).
 */
export function buildPain002(input: Pain002Input): string {
  const e = xmlEscape;
  const createdAt = (input.createdAt ?? new Date()).toISOString();
  // OrgnlPmtInfAndSts without any TxInfAndSts is fine (a whole-request rejection).
  const grpSts = input.groupStatus !== undefined ? `<GrpSts>${e(input.groupStatus)}</GrpSts>` : '';
  const txs = input.transactions.map((t) =>
    [
      '<TxInfAndSts>',
      t.instrId !== undefined ? `<OrgnlInstrId>${e(t.instrId)}</OrgnlInstrId>` : '',
      `<OrgnlEndToEndId>${e(t.endToEndId)}</OrgnlEndToEndId>`,
      `<TxSts>${e(t.status)}</TxSts>`,
      statusReasonXml(t.reasonCode, t.reasonText),
      '</TxInfAndSts>',
    ].join(''),
  );
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<Document xmlns="${PAIN002_NS}">`,
    '<CstmrPmtStsRpt>',
    `<GrpHdr><MsgId>${e(input.msgId)}</MsgId><CreDtTm>${createdAt}</CreDtTm></GrpHdr>`,
    `<OrgnlGrpInfAndSts><OrgnlMsgId>${e(input.originalMsgId)}</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>${grpSts}${statusReasonXml(input.groupReasonCode, input.groupReasonText)}</OrgnlGrpInfAndSts>`,
    '<OrgnlPmtInfAndSts>',
    `<OrgnlPmtInfId>${e(input.originalPaymentInformationId ?? input.originalMsgId)}</OrgnlPmtInfId>${grpSts.replace(/GrpSts/g, 'PmtInfSts')}`,
    ...txs,
    '</OrgnlPmtInfAndSts>',
    '</CstmrPmtStsRpt>',
    '</Document>',
  ].join('\n');
}
