/**
 * ISO 20022 pain.001.001.09 (CustomerCreditTransferInitiation): the builder the payout worker uses
 * and the parser the sandbox bank uses, plus the SEPA data rules both sides share (IBAN mod-97,
 * SEPA character set, Max35Text identifiers, decimal amounts).
 *
 * Shape we send (one PmtInf, one CdtTrfTxInf per payout; element order follows the XSD):
 *
 *   Document/CstmrCdtTrfInitn
 *     GrpHdr: MsgId (= batch idempotency key), CreDtTm, NbOfTxs, CtrlSum, InitgPty/Nm
 *     PmtInf: PmtInfId, PmtMtd=TRF, BtchBookg=false, NbOfTxs, CtrlSum, PmtTpInf/SvcLvl/Cd=SEPA,
 *             ReqdExctnDt/Dt, Dbtr/Nm, DbtrAcct/Id/IBAN, DbtrAgt/FinInstnId/BICFI, ChrgBr=SLEV
 *       CdtTrfTxInf: PmtId/InstrId+EndToEndId (= paymentId), Amt/InstdAmt@Ccy, CdtrAgt/FinInstnId/BICFI?,
 *                    Cdtr/Nm, CdtrAcct/Id/IBAN, RmtInf/Ustrd?
 */
import { randomUUID } from 'node:crypto';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { TerminalError } from '../../../shared/errors.js';
import {
  invalidPayout,
  maskIban,
  MAX_TRANSACTIONS_PER_INITIATION,
  PAIN001_NS,
  type Pain001Batch,
  type Pain001Transaction,
  type ParsedPain001,
  type PayoutInstruction,
} from './types.js';

// ---------------------------------------------------------------------------------------------
// SEPA data rules
// ---------------------------------------------------------------------------------------------

/** The EPC "Latin" character set every SEPA bank must accept in text fields. */
const SEPA_CHAR = /[A-Za-z0-9/\-?:().,'+ ]/;
/** Non-ASCII letters with no decomposition that still have an obvious Latin spelling. */
const TRANSLITERATE: Record<string, string> = {
  ß: 'ss',
  æ: 'ae',
  Æ: 'AE',
  ø: 'o',
  Ø: 'O',
  œ: 'oe',
  Œ: 'OE',
  đ: 'd',
  Đ: 'D',
  ł: 'l',
  Ł: 'L',
  þ: 'th',
  Þ: 'TH',
  '&': '+',
};

/**
 * Clean free text to the SEPA character set and cut it to `max` characters: accents are removed
 * (é -> e) rather than the letter dropped, a few letters are transliterated, anything else outside the
 * set is dropped, whitespace collapsed. Banks reject or silently mangle other characters, so we do it
 * ourselves and deterministically (a retry sends the same bytes).
 */
export function toSepaText(text: string, max: number): string {
  const decomposed = text.normalize('NFD').replace(/\p{M}/gu, '');
  let out = '';
  for (const ch of decomposed) {
    const mapped = TRANSLITERATE[ch] ?? (/\s/.test(ch) ? ' ' : ch);
    for (const c of mapped) if (SEPA_CHAR.test(c)) out += c;
  }
  return out.replace(/ {2,}/g, ' ').trim().slice(0, max).trim();
}

/**
 * A SEPA identifier (MsgId, PmtInfId, InstrId, EndToEndId): 1-35 characters of the SEPA set without
 * spaces, not starting or ending with `/`, no `//` (EPC implementation guidelines).
 */
export function isSepaIdentifier(id: string): boolean {
  return /^[A-Za-z0-9/\-?:().,'+]{1,35}$/.test(id) && !id.startsWith('/') && !id.endsWith('/') && !id.includes('//');
}

/** Upper case, spaces removed: the electronic form of an IBAN. */
export function normalizeIban(iban: string): string {
  return iban.replace(/\s+/g, '').toUpperCase();
}

/** True when `iban` (any spacing/case) has a valid shape and ISO 7064 mod-97 checksum. */
export function isValidIban(iban: string): boolean {
  const s = normalizeIban(iban);
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(s)) return false;
  const rearranged = s.slice(4) + s.slice(0, 4);
  // Piecewise mod so the 30+ digit number never exceeds Number precision.
  let rem = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? String(code - 55) : ch;
    for (const d of value) rem = (rem * 10 + (d.charCodeAt(0) - 48)) % 97;
  }
  return rem === 1;
}

/** True for an 8- or 11-character BIC (ISO 9362). */
export function isValidBic(bic: string): boolean {
  return /^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$/.test(bic);
}

/** Largest SEPA credit transfer amount, 999,999,999.99, in minor units. */
const MAX_AMOUNT_MINOR = 99_999_999_999;

/** Integer minor units -> ISO decimal string with two places (`1250` -> `12.50`). */
export function formatMinorUnits(minor: number): string {
  if (!Number.isSafeInteger(minor) || minor < 0) throw new RangeError(`not a non-negative integer amount: ${minor}`);
  const s = String(minor).padStart(3, '0');
  return `${s.slice(0, -2)}.${s.slice(-2)}`;
}

/** ISO decimal string (at most two decimals) -> integer minor units; undefined when malformed. */
export function parseDecimalToMinor(text: string): number | undefined {
  const m = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'));
}

/**
 * The EndToEndId for a payout: the paymentId itself when it is a valid SEPA identifier. A canonical
 * UUID (36 chars) does not fit Max35Text, so it is sent in its 32-hex form; the mapping is pure, so
 * the worker matches pain.002 statuses with `toEndToEndId(payout.paymentId) === tx.endToEndId`.
 * Anything else that cannot be sent throws a TerminalError.
 */
export function toEndToEndId(paymentId: string): string {
  if (isSepaIdentifier(paymentId)) return paymentId;
  if (/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(paymentId)) {
    return paymentId.replace(/-/g, '').toLowerCase();
  }
  return invalidPayout(
    `paymentId ${JSON.stringify(paymentId.slice(0, 40))} cannot be an EndToEndId (1-35 chars of A-Z a-z 0-9 / - ? : ( ) . , ' +)`,
  );
}

/**
 * A fresh batch idempotency key: a random UUID in its 32-hex form, because `MsgId` is Max35Text and
 * the dashed form is 36 characters. Generate once per batch, store it, reuse it on every retry.
 */
export function newBatchIdempotencyKey(): string {
  return randomUUID().replace(/-/g, '');
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

/** Escape text for XML element content and attribute values. */
export function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
}

interface CleanPayout {
  readonly endToEndId: string;
  readonly amount: number;
  readonly creditorName: string;
  readonly iban: string;
  readonly bic: string | undefined;
  readonly remittance: string;
}

function cleanPayout(p: PayoutInstruction): CleanPayout {
  const id = typeof p.paymentId === 'string' ? p.paymentId : '';
  const endToEndId = toEndToEndId(id);
  if (!Number.isSafeInteger(p.amount) || p.amount <= 0)
    invalidPayout(`payout ${id}: amount must be a positive integer in minor units, got ${String(p.amount)}`);
  if (p.amount > MAX_AMOUNT_MINOR) invalidPayout(`payout ${id}: amount ${p.amount} exceeds the SEPA maximum ${MAX_AMOUNT_MINOR}`);
  if (p.currency !== 'EUR')
    invalidPayout(`payout ${id}: currency must be EUR for a SEPA credit transfer, got ${String(p.currency)}`);
  const creditorName = toSepaText(p.creditor?.name ?? '', 70);
  if (creditorName === '') invalidPayout(`payout ${id}: creditor name is empty after cleaning to the SEPA character set`);
  const iban = normalizeIban(p.creditor?.iban ?? '');
  if (!isValidIban(iban))
    invalidPayout(`payout ${id}: creditor IBAN ${maskIban(iban)} is not a valid IBAN (shape or mod-97 checksum)`);
  const bic = p.creditor.bic ? p.creditor.bic.replace(/\s+/g, '').toUpperCase() : undefined;
  if (bic !== undefined && !isValidBic(bic))
    invalidPayout(`payout ${id}: creditor BIC ${JSON.stringify(bic.slice(0, 11))} is not a valid BIC`);
  return { endToEndId, amount: p.amount, creditorName, iban, bic, remittance: toSepaText(p.remittanceInformation ?? '', 140) };
}

/**
 * Build the pain.001.001.09 document for one batch (1..100 payouts). Deterministic for the same
 * input (pass `createdAt` and `requestedExecutionDate` when re-sending so the bytes match).
 * @throws TerminalError code `INVALID_PAYOUT` with the reason (IBANs masked) when any input is invalid.
 */
export function buildPain001(batch: Pain001Batch): string {
  if (!isSepaIdentifier(batch.msgId)) {
    invalidPayout(
      `batch MsgId ${JSON.stringify(batch.msgId.slice(0, 40))} is not a SEPA identifier (1-35 chars; use newBatchIdempotencyKey())`,
    );
  }
  const n = batch.payouts.length;
  if (n === 0) invalidPayout('a batch needs at least one payout');
  if (n > MAX_TRANSACTIONS_PER_INITIATION)
    invalidPayout(`a batch holds at most ${MAX_TRANSACTIONS_PER_INITIATION} payouts, got ${n}`);
  const debtorName = toSepaText(batch.debtor.name, 70);
  if (debtorName === '') invalidPayout('debtor name is empty after cleaning to the SEPA character set');
  const debtorIban = normalizeIban(batch.debtor.iban);
  if (!isValidIban(debtorIban)) invalidPayout(`debtor IBAN ${maskIban(debtorIban)} is not a valid IBAN`);
  const debtorBic = batch.debtor.bic.replace(/\s+/g, '').toUpperCase();
  if (!isValidBic(debtorBic)) invalidPayout(`debtor BIC ${JSON.stringify(debtorBic.slice(0, 11))} is not a valid BIC`);
  const date = batch.requestedExecutionDate ?? new Date().toISOString().slice(0, 10);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) invalidPayout(`requested execution date ${JSON.stringify(date)} is not YYYY-MM-DD`);

  const payouts = batch.payouts.map(cleanPayout);
  const seen = new Set<string>();
  for (const p of payouts) {
    // The EndToEndId is how a status finds its payout; two equal ids would make the answer ambiguous.
    if (seen.has(p.endToEndId)) invalidPayout(`payout ${p.endToEndId} appears twice in the batch`);
    seen.add(p.endToEndId);
  }
  const ctrlSum = formatMinorUnits(payouts.reduce((sum, p) => sum + p.amount, 0));
  const createdAt = (batch.createdAt ?? new Date()).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const initgName = toSepaText(batch.initiatingPartyName ?? batch.debtor.name, 70) || debtorName;
  const e = xmlEscape;

  const txs = payouts.map((p) =>
    [
      '<CdtTrfTxInf>',
      `<PmtId><InstrId>${e(p.endToEndId)}</InstrId><EndToEndId>${e(p.endToEndId)}</EndToEndId></PmtId>`,
      `<Amt><InstdAmt Ccy="EUR">${formatMinorUnits(p.amount)}</InstdAmt></Amt>`,
      p.bic ? `<CdtrAgt><FinInstnId><BICFI>${e(p.bic)}</BICFI></FinInstnId></CdtrAgt>` : '',
      `<Cdtr><Nm>${e(p.creditorName)}</Nm></Cdtr>`,
      `<CdtrAcct><Id><IBAN>${e(p.iban)}</IBAN></Id></CdtrAcct>`,
      p.remittance ? `<RmtInf><Ustrd>${e(p.remittance)}</Ustrd></RmtInf>` : '',
      '</CdtTrfTxInf>',
    ].join(''),
  );
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<Document xmlns="${PAIN001_NS}">`,
    '<CstmrCdtTrfInitn>',
    `<GrpHdr><MsgId>${e(batch.msgId)}</MsgId><CreDtTm>${createdAt}</CreDtTm><NbOfTxs>${n}</NbOfTxs><CtrlSum>${ctrlSum}</CtrlSum><InitgPty><Nm>${e(initgName)}</Nm></InitgPty></GrpHdr>`,
    '<PmtInf>',
    `<PmtInfId>${e(batch.msgId)}</PmtInfId><PmtMtd>TRF</PmtMtd><BtchBookg>false</BtchBookg><NbOfTxs>${n}</NbOfTxs><CtrlSum>${ctrlSum}</CtrlSum>`,
    '<PmtTpInf><SvcLvl><Cd>SEPA</Cd></SvcLvl></PmtTpInf>',
    `<ReqdExctnDt><Dt>${date}</Dt></ReqdExctnDt>`,
    `<Dbtr><Nm>${e(debtorName)}</Nm></Dbtr>`,
    `<DbtrAcct><Id><IBAN>${e(debtorIban)}</IBAN></Id></DbtrAcct>`,
    `<DbtrAgt><FinInstnId><BICFI>${e(debtorBic)}</BICFI></FinInstnId></DbtrAgt>`,
    '<ChrgBr>SLEV</ChrgBr>',
    ...txs,
    '</PmtInf>',
    '</CstmrCdtTrfInitn>',
    '</Document>',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Parsing (shared with pain002.ts)
// ---------------------------------------------------------------------------------------------

/** Elements that may repeat in pain.001/pain.002; always parsed as arrays so one and many look alike. */
const ARRAY_ELEMENTS = new Set([
  'PmtInf',
  'CdtTrfTxInf',
  'Ustrd',
  'OrgnlPmtInfAndSts',
  'TxInfAndSts',
  'StsRsnInf',
  'AddtlInf',
  'NbOfTxsPerSts',
]);

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Banks may write `<ns2:Document xmlns:ns2=...>`; the namespace is checked separately below.
  removeNSPrefix: true,
  // Keep every value a string: "0012.50" and ids with leading zeros must survive as written.
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  htmlEntities: true,
  isArray: (name) => ARRAY_ELEMENTS.has(name),
});

/** A parsed XML node: element name -> child node(s) or text. */
export type XmlNode = Record<string, unknown>;

/**
 * Parse an ISO 20022 document and return its message element (`Document/<messageElement>`).
 * Rejects DOCTYPE (no entity expansion tricks in bank XML), malformed XML and a wrong namespace.
 * @throws TerminalError with `code` and a reason safe to show the sender.
 */
export function parseIsoDocument(xml: string, namespace: string, messageElement: string, code: string): XmlNode {
  if (/<!DOCTYPE/i.test(xml)) throw new TerminalError(code, 'DOCTYPE is not allowed');
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new TerminalError(code, `malformed XML at line ${valid.err.line}: ${valid.err.msg.slice(0, 120)}`);
  // Root start tag: first element after the prolog/comments. Its prefix decides which xmlns applies.
  const root = /<(?![?!])([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)([^>]*)>/.exec(xml);
  if (root?.[2] !== 'Document') throw new TerminalError(code, 'root element must be Document');
  const prefix = root[1] ? root[1].slice(0, -1) : undefined;
  const nsAttr = new RegExp(`\\sxmlns${prefix ? `:${prefix}` : ''}\\s*=\\s*(["'])(.*?)\\1`).exec(root[3] ?? '');
  const ns = nsAttr?.[2];
  if (ns !== namespace) throw new TerminalError(code, `wrong namespace ${JSON.stringify(ns ?? '')}, expected ${namespace}`);
  const doc = child(parser.parse(xml) as XmlNode, 'Document');
  const msg = doc ? child(doc, messageElement) : undefined;
  if (!msg) throw new TerminalError(code, `missing Document/${messageElement}`);
  return msg;
}

/** The single child element `name` of `node`, if it is an element. */
export function child(node: XmlNode | undefined, name: string): XmlNode | undefined {
  const v = node?.[name];
  const first = Array.isArray(v) ? v[0] : v;
  return typeof first === 'object' && first !== null ? (first as XmlNode) : undefined;
}

/** All child elements `name` of `node`. */
export function children(node: XmlNode | undefined, name: string): XmlNode[] {
  const v = node?.[name];
  const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return list.map((x) => (typeof x === 'object' && x !== null ? (x as XmlNode) : { '#text': String(x) }));
}

/** Text at a path of element names (`text(n, 'PmtId', 'EndToEndId')`), or undefined. */
export function text(node: XmlNode | undefined, ...path: string[]): string | undefined {
  let cur: unknown = node;
  for (const name of path) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    const v = (cur as XmlNode)[name];
    cur = Array.isArray(v) ? v[0] : v;
  }
  if (typeof cur === 'string') return cur === '' ? undefined : cur;
  if (typeof cur === 'object' && cur !== null && typeof (cur as XmlNode)['#text'] === 'string')
    return (cur as XmlNode)['#text'] as string;
  return undefined;
}

function must(code: string, value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw new TerminalError(code, `missing ${what}`);
  return value;
}

/** Options of {@link parsePain001}. */
export interface ParsePain001Options {
  /** @default 100 (docs/contract.md §7) */
  readonly maxTransactions?: number;
}

/**
 * Parse and validate a pain.001.001.09 as a bank would: structure, namespace, one PmtInf, NbOfTxs and
 * CtrlSum consistent, amounts > 0, IBAN checksums, at most `maxTransactions` transactions.
 * @throws TerminalError code `INVALID_PAIN001` whose message is a reason safe to return in a 400.
 */
export function parsePain001(xml: string, options: ParsePain001Options = {}): ParsedPain001 {
  const code = 'INVALID_PAIN001';
  const max = options.maxTransactions ?? MAX_TRANSACTIONS_PER_INITIATION;
  const msg = parseIsoDocument(xml, PAIN001_NS, 'CstmrCdtTrfInitn', code);
  const hdr = child(msg, 'GrpHdr');
  const msgId = must(code, text(hdr, 'MsgId'), 'GrpHdr/MsgId');
  if (!isSepaIdentifier(msgId)) throw new TerminalError(code, 'GrpHdr/MsgId is not a valid identifier (1-35 chars)');
  const nbOfTxs = Number(must(code, text(hdr, 'NbOfTxs'), 'GrpHdr/NbOfTxs'));
  const ctrlSumText = text(hdr, 'CtrlSum');
  const ctrlSum = ctrlSumText === undefined ? undefined : parseDecimalToMinor(ctrlSumText);
  if (ctrlSumText !== undefined && ctrlSum === undefined) throw new TerminalError(code, 'GrpHdr/CtrlSum is not a decimal amount');

  const pmtInfs = children(msg, 'PmtInf');
  if (pmtInfs.length !== 1) throw new TerminalError(code, `expected exactly one PmtInf, got ${pmtInfs.length}`);
  const pmt = pmtInfs[0] as XmlNode;
  const rawTxs = children(pmt, 'CdtTrfTxInf');
  if (rawTxs.length === 0) throw new TerminalError(code, 'no CdtTrfTxInf');
  if (rawTxs.length > max) throw new TerminalError(code, `too many transactions: ${rawTxs.length} > ${max}`);
  if (nbOfTxs !== rawTxs.length)
    throw new TerminalError(code, `GrpHdr/NbOfTxs ${nbOfTxs} does not match ${rawTxs.length} transactions`);

  const debtorIban = normalizeIban(must(code, text(pmt, 'DbtrAcct', 'Id', 'IBAN'), 'DbtrAcct/Id/IBAN'));
  if (!isValidIban(debtorIban)) throw new TerminalError(code, `invalid debtor IBAN ${maskIban(debtorIban)}`);
  const transactions = rawTxs.map((tx, i): Pain001Transaction => {
    const where = `CdtTrfTxInf[${i + 1}]`;
    const endToEndId = must(code, text(tx, 'PmtId', 'EndToEndId'), `${where}/PmtId/EndToEndId`);
    const amtNode = child(child(tx, 'Amt'), 'InstdAmt');
    const amount = parseDecimalToMinor(must(code, text(child(tx, 'Amt'), 'InstdAmt'), `${where}/Amt/InstdAmt`));
    if (amount === undefined || amount <= 0)
      throw new TerminalError(code, `${where}: InstdAmt must be a positive decimal with at most 2 places`);
    const currency = must(
      code,
      typeof amtNode?.['@_Ccy'] === 'string' ? (amtNode['@_Ccy'] as string) : undefined,
      `${where}/Amt/InstdAmt@Ccy`,
    );
    const creditorIban = normalizeIban(must(code, text(tx, 'CdtrAcct', 'Id', 'IBAN'), `${where}/CdtrAcct/Id/IBAN`));
    if (!isValidIban(creditorIban))
      throw new TerminalError(code, `${where} (${endToEndId}): invalid creditor IBAN ${maskIban(creditorIban)}`);
    const ustrd = children(child(tx, 'RmtInf'), 'Ustrd').map((u) => String(u['#text'] ?? ''));
    return {
      instrId: text(tx, 'PmtId', 'InstrId'),
      endToEndId,
      amount,
      currency,
      creditorName: must(code, text(tx, 'Cdtr', 'Nm'), `${where}/Cdtr/Nm`),
      creditorIban,
      creditorBic: text(tx, 'CdtrAgt', 'FinInstnId', 'BICFI'),
      remittanceInformation: ustrd.length > 0 ? ustrd.join(' ') : undefined,
    };
  });
  const sum = transactions.reduce((s, t) => s + t.amount, 0);
  if (ctrlSum !== undefined && ctrlSum !== sum)
    throw new TerminalError(code, `GrpHdr/CtrlSum ${ctrlSumText} does not match the sum ${formatMinorUnits(sum)}`);
  return {
    msgId,
    createdAt: must(code, text(hdr, 'CreDtTm'), 'GrpHdr/CreDtTm'),
    nbOfTxs,
    ctrlSum,
    initiatingPartyName: text(hdr, 'InitgPty', 'Nm'),
    paymentInformationId: must(code, text(pmt, 'PmtInfId'), 'PmtInf/PmtInfId'),
    requestedExecutionDate: must(code, text(pmt, 'ReqdExctnDt', 'Dt') ?? text(pmt, 'ReqdExctnDt', 'DtTm'), 'PmtInf/ReqdExctnDt'),
    debtor: {
      name: must(code, text(pmt, 'Dbtr', 'Nm'), 'Dbtr/Nm'),
      iban: debtorIban,
      bic: text(pmt, 'DbtrAgt', 'FinInstnId', 'BICFI'),
    },
    transactions,
  };
}
