/**
 * Worldpay XML Direct `paymentService` messages (DTD v1, version 1.4), as GOV.UK Pay's
 * pay-connector sends and reads them. Shared by the connector (builds requests, reads replies) and
 * the Worldpay-shaped sandbox (reads requests, builds replies), so both sides agree on one shape.
 *
 * Every document is built with fast-xml-parser's builder, which escapes `& < > " '` in text and
 * attributes: descriptions, references and card holder names are untrusted input and must never be
 * concatenated into markup. Only the fixed prologue (XML declaration + DOCTYPE) is a literal string.
 *
 * Nothing in this module logs. Request documents carry card data; callers must not log them either.
 */
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

/** Worldpay's public DTD identifier; Worldpay rejects documents that do not declare it. */
export const WORLDPAY_DOCTYPE =
  '<!DOCTYPE paymentService PUBLIC "-//WorldPay//DTD WorldPay PaymentService v1//EN" "http://dtd.worldpay.com/paymentService_v1.dtd">';
const PROLOGUE = `<?xml version="1.0" encoding="UTF-8"?>\n${WORLDPAY_DOCTYPE}\n`;
export const WORLDPAY_VERSION = '1.4';
/** Worldpay's XML Direct endpoint path (secure.worldpay.com / secure-test.worldpay.com). */
export const WORLDPAY_XML_PATH = '/jsp/merchant/xml/paymentService.jsp';

/** A parsed XML node: attributes under `@_name`, text under `#text`, children by element name. */
export type XmlNode = { readonly [key: string]: unknown };

// `__cdata` lets the sandbox wrap texts in CDATA as Worldpay does; requests never use it.
const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  cdataPropName: '__cdata',
  suppressEmptyNode: true,
  format: false,
});

// parseTagValue/parseAttributeValue off: order codes like "00123" and amounts must stay strings.
// CDATA (Worldpay wraps error texts and holder names in it) is merged into `#text`.
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  ignoreDeclaration: true,
});

/** Characters XML 1.0 cannot carry at all (even escaped); stripped from untrusted text. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters XML 1.0 forbids
const INVALID_XML_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g;

/** Remove characters that would make the document unparseable (escaping cannot fix those). */
export function xmlSafe(text: string): string {
  return text.replace(INVALID_XML_CHARS, '');
}

/** Build `<paymentService version="1.4" merchantCode=...>{body}</paymentService>` with prologue. */
export function buildPaymentService(merchantCode: string, body: Record<string, unknown>): string {
  const doc = { paymentService: { '@_version': WORLDPAY_VERSION, '@_merchantCode': xmlSafe(merchantCode), ...body } };
  return PROLOGUE + builder.build(doc);
}

/** Parse a document. Throws on input that is not XML; returns the `paymentService` node or undefined. */
export function parsePaymentService(xml: string): XmlNode | undefined {
  const doc = parser.parse(xml, true) as XmlNode;
  return asNode(doc.paymentService);
}

// ---- tiny accessors over the parsed tree -------------------------------------------------------

/** The value as an element node, or undefined (a text-only element parses as a string). */
export function asNode(v: unknown): XmlNode | undefined {
  if (Array.isArray(v)) return asNode(v[0]);
  return typeof v === 'object' && v !== null ? (v as XmlNode) : undefined;
}

/** Text content of an element that may be plain text or carry attributes. */
export function textOf(v: unknown): string | undefined {
  if (Array.isArray(v)) return textOf(v[0]);
  if (typeof v === 'string') return v.trim();
  const n = asNode(v);
  const t = n?.['#text'];
  return typeof t === 'string' ? t.trim() : t === undefined ? (n ? '' : undefined) : String(t);
}

/** An attribute value. */
export function attr(node: XmlNode | undefined, name: string): string | undefined {
  const v = node?.[`@_${name}`];
  return typeof v === 'string' ? v : v === undefined ? undefined : String(v);
}

/** Walk child elements by name. */
export function child(node: XmlNode | undefined, ...path: string[]): XmlNode | undefined {
  let cur: XmlNode | undefined = node;
  for (const p of path) cur = asNode(cur?.[p]);
  return cur;
}

/** True if the element is present (even empty: `<cancel/>` parses as ''). */
export function has(node: XmlNode | undefined, name: string): boolean {
  return node !== undefined && name in node;
}

// ---- money ---------------------------------------------------------------------------------------

/** ISO 4217 minor-unit exponents that are not 2. Worldpay's `exponent` must match the currency. */
const EXPONENTS: Readonly<Record<string, number>> = {
  BIF: 0,
  CLP: 0,
  DJF: 0,
  GNF: 0,
  ISK: 0,
  JPY: 0,
  KMF: 0,
  KRW: 0,
  PYG: 0,
  RWF: 0,
  UGX: 0,
  UYI: 0,
  VND: 0,
  VUV: 0,
  XAF: 0,
  XOF: 0,
  XPF: 0,
  BHD: 3,
  IQD: 3,
  JOD: 3,
  KWD: 3,
  LYD: 3,
  OMR: 3,
  TND: 3,
  CLF: 4,
  UYW: 4,
};

/** The ISO 4217 exponent for `currency` (upper-case three letters), 2 unless listed otherwise. */
export function currencyExponent(currency: string): number {
  return EXPONENTS[currency] ?? 2;
}

/** An `<amount value currencyCode exponent/>` as read from a reply. */
export interface WorldpayAmount {
  readonly value: number;
  readonly currencyCode: string;
  readonly exponent: number;
}

/** Read an `<amount>` element; undefined if absent or malformed (malformed is treated as a mismatch). */
export function readAmount(node: XmlNode | undefined): WorldpayAmount | undefined {
  const value = attr(node, 'value');
  const currencyCode = attr(node, 'currencyCode');
  const exponent = attr(node, 'exponent') ?? '2';
  if (!value || !/^\d{1,15}$/.test(value) || !currencyCode || !/^\d$/.test(exponent)) return undefined;
  return { value: Number(value), currencyCode, exponent: Number(exponent) };
}

/** The `<amount>` element for a request: minor units with the currency's ISO exponent. */
export function amountElement(amount: number, currency: string): Record<string, string> {
  return { '@_currencyCode': currency, '@_exponent': String(currencyExponent(currency)), '@_value': String(amount) };
}

/**
 * True when Worldpay's answered amount is the amount we asked for. Compared in the same scale: an
 * answer with another exponent is rescaled rather than compared digit for digit.
 */
export function amountMatches(answered: WorldpayAmount | undefined, amount: number, currency: string): boolean {
  if (!answered || answered.currencyCode !== currency) return false;
  const ours = currencyExponent(currency);
  const scaled = answered.value * 10 ** (ours - answered.exponent);
  return scaled === amount;
}

// ---- replies -------------------------------------------------------------------------------------

/** The meaning of a Worldpay reply, reduced to what the connector decides on. */
export type WorldpayReply =
  /** `<reply><error code>`: the whole request was rejected. */
  | { readonly type: 'error'; readonly code: string; readonly message: string }
  /** `<reply><orderStatus><error code>`: the request was read, the order could not be answered. */
  | { readonly type: 'orderError'; readonly orderCode: string; readonly code: string; readonly message: string }
  /** `<reply><orderStatus><payment>`: an order and its last event. */
  | {
      readonly type: 'orderStatus';
      readonly orderCode: string;
      /** Upper-case lastEvent, '' when Worldpay sent none (or the literal "null"). */
      readonly lastEvent: string;
      readonly amount: WorldpayAmount | undefined;
      readonly isoCode: string | undefined;
      readonly isoDescription: string | undefined;
      /** The order's refund journals (`<journal>` with a `journalReference type="refund"`), oldest first. */
      readonly refunds: readonly WorldpayRefundJournal[];
    }
  /** `<reply><orderStatus>` asking for 3-D Secure (requestInfo / challengeRequired). */
  | { readonly type: 'threeDsRequired'; readonly orderCode: string }
  | { readonly type: 'captureReceived'; readonly orderCode: string; readonly amount: WorldpayAmount | undefined }
  | { readonly type: 'cancelReceived'; readonly orderCode: string }
  | { readonly type: 'refundReceived'; readonly orderCode: string; readonly amount: WorldpayAmount | undefined }
  /** Anything else: not a paymentService reply we understand. */
  | { readonly type: 'unrecognised' };

/**
 * One refund of an order as Worldpay journals it (the shape of its order notifications:
 * `<journal journalType="SENT_FOR_REFUND|REFUNDED|REFUND_FAILED"><accountTx><amount/></accountTx>
 * <journalReference type="refund" reference="…"/></journal>`), read from an inquiry reply.
 */
export interface WorldpayRefundJournal {
  /** The `reference` the refund modification carried (payfleet's refund idempotency key). */
  readonly reference: string;
  /** Upper case: SENT_FOR_REFUND, REFUNDED, REFUNDED_BY_MERCHANT, REFUND_FAILED... */
  readonly journalType: string;
  readonly amount: WorldpayAmount | undefined;
}

function readRefundJournals(status: XmlNode): WorldpayRefundJournal[] {
  const raw = status.journal;
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  const out: WorldpayRefundJournal[] = [];
  for (const j of list) {
    const node = asNode(j);
    const ref = child(node, 'journalReference');
    if (!node || attr(ref, 'type') !== 'refund' || !attr(ref, 'reference')) continue;
    out.push({
      reference: attr(ref, 'reference') ?? '',
      journalType: (attr(node, 'journalType') ?? '').toUpperCase(),
      amount: readAmount(child(node, 'accountTx', 'amount')),
    });
  }
  return out;
}

/**
 * Read a Worldpay reply document. Never throws: a body that is not XML, or XML without a reply we
 * know, is `unrecognised`. The caller decides what that means (it is never a decline).
 */
export function parseReply(xml: string): WorldpayReply {
  let root: XmlNode | undefined;
  try {
    root = parsePaymentService(xml);
  } catch {
    return { type: 'unrecognised' };
  }
  const reply = child(root, 'reply');
  if (!reply) return { type: 'unrecognised' };

  const error = asNode(reply.error) ?? (typeof reply.error === 'string' ? { '#text': reply.error } : undefined);
  if (error) return { type: 'error', code: attr(error, 'code') ?? '', message: textOf(error) ?? '' };

  const status = child(reply, 'orderStatus');
  if (status) {
    const orderCode = attr(status, 'orderCode') ?? '';
    const orderError = asNode(status.error);
    if (orderError)
      return { type: 'orderError', orderCode, code: attr(orderError, 'code') ?? '', message: textOf(orderError) ?? '' };
    if (has(status, 'requestInfo') || has(status, 'challengeRequired')) return { type: 'threeDsRequired', orderCode };
    const payment = child(status, 'payment');
    if (!payment) return { type: 'unrecognised' };
    const last = (textOf(payment.lastEvent) ?? '').toUpperCase();
    const iso = child(payment, 'ISO8583ReturnCode');
    return {
      type: 'orderStatus',
      orderCode,
      lastEvent: last === 'NULL' ? '' : last,
      amount: readAmount(child(payment, 'amount')),
      isoCode: attr(iso, 'code'),
      isoDescription: attr(iso, 'description'),
      refunds: readRefundJournals(status),
    };
  }

  const ok = child(reply, 'ok');
  if (ok) {
    const capture = asNode(ok.captureReceived) ?? (has(ok, 'captureReceived') ? {} : undefined);
    if (capture)
      return {
        type: 'captureReceived',
        orderCode: attr(capture, 'orderCode') ?? '',
        amount: readAmount(child(capture, 'amount')),
      };
    const cancel = asNode(ok.cancelReceived) ?? (has(ok, 'cancelReceived') ? {} : undefined);
    if (cancel) return { type: 'cancelReceived', orderCode: attr(cancel, 'orderCode') ?? '' };
    const refund = asNode(ok.refundReceived) ?? (has(ok, 'refundReceived') ? {} : undefined);
    if (refund)
      return { type: 'refundReceived', orderCode: attr(refund, 'orderCode') ?? '', amount: readAmount(child(refund, 'amount')) };
  }
  return { type: 'unrecognised' };
}

// ---- requests ------------------------------------------------------------------------------------

/** Card fields for `<CARD-SSL>`, already revealed from a SensitiveCard by the connector. */
export interface CardSslDetails {
  readonly number: string;
  readonly expMonth: number;
  readonly expYear: number;
  readonly cvc: string;
  readonly holderName: string;
}

/** What an order submit needs; `orderCode` is the idempotency key (Worldpay rejects duplicates). */
export interface OrderSubmit {
  readonly orderCode: string;
  readonly description: string;
  readonly amount: number;
  readonly currency: string;
  readonly card: CardSslDetails;
}

/**
 * `<submit><order>` with `<CARD-SSL>` payment details, as pay-connector's non-3DS card template.
 * No `<session>`/`<shopper>`: pay-connector only sends them for 3-D Secure or a payer e-mail, and
 * the fleet has neither. The returned string contains the PAN and CVC: send it, never log it.
 */
export function buildOrderSubmit(merchantCode: string, o: OrderSubmit): string {
  return buildPaymentService(merchantCode, {
    submit: {
      order: {
        '@_orderCode': o.orderCode,
        description: xmlSafe(o.description),
        amount: amountElement(o.amount, o.currency),
        paymentDetails: {
          'CARD-SSL': {
            cardNumber: o.card.number,
            expiryDate: {
              date: { '@_month': String(o.card.expMonth).padStart(2, '0'), '@_year': String(o.card.expYear).padStart(4, '0') },
            },
            cardHolderName: xmlSafe(o.card.holderName),
            cvc: o.card.cvc,
          },
        },
      },
    },
  });
}

/** `<inquiry><orderInquiry orderCode/>`. */
export function buildOrderInquiry(merchantCode: string, orderCode: string): string {
  return buildPaymentService(merchantCode, { inquiry: { orderInquiry: { '@_orderCode': orderCode, '#text': '' } } });
}

/** `<modify><orderModification><capture><date/><amount/></capture>`; the date is the UTC day, as pay-connector. */
export function buildCapture(merchantCode: string, orderCode: string, amount: number, currency: string, now: Date): string {
  const date = {
    '@_dayOfMonth': String(now.getUTCDate()).padStart(2, '0'),
    '@_month': String(now.getUTCMonth() + 1).padStart(2, '0'),
    '@_year': String(now.getUTCFullYear()),
  };
  return buildPaymentService(merchantCode, {
    modify: { orderModification: { '@_orderCode': orderCode, capture: { date, amount: amountElement(amount, currency) } } },
  });
}

/** `<modify><orderModification><cancel/>`. */
export function buildCancel(merchantCode: string, orderCode: string): string {
  return buildPaymentService(merchantCode, { modify: { orderModification: { '@_orderCode': orderCode, cancel: '' } } });
}

/**
 * `<modify><orderModification orderCode><refund reference><amount/></refund>`, as pay-connector's
 * refund template; `reference` identifies this refund among the order's refunds (its journal).
 */
export function buildRefund(merchantCode: string, orderCode: string, reference: string, amount: number, currency: string): string {
  return buildPaymentService(merchantCode, {
    modify: {
      orderModification: {
        '@_orderCode': orderCode,
        refund: { '@_reference': reference, amount: amountElement(amount, currency) },
      },
    },
  });
}

// ---- requests as Worldpay reads them (the sandbox) -----------------------------------------------

/** A submitted order's fields, as the sandbox needs them. Strings where Worldpay validates the text. */
export interface SubmittedOrder {
  readonly description: string;
  readonly value: number;
  readonly currency: string;
  readonly exponent: string;
  readonly cardNumber: string;
  readonly holderName: string;
  readonly month: number;
  readonly year: number;
}

/** A request document read the way Worldpay routes it. `order`/`amount` undefined: elements missing (error 2). */
export type WorldpayRequest = { readonly merchantCode: string; readonly orderCode: string } & (
  | { readonly op: 'submit'; readonly order: SubmittedOrder | undefined }
  | { readonly op: 'inquiry' }
  | { readonly op: 'capture'; readonly amount: { value: number; currencyCode: string; exponent: string } | undefined }
  | { readonly op: 'cancel' }
  | {
      readonly op: 'refund';
      readonly reference: string;
      readonly amount: { value: number; currencyCode: string; exponent: string } | undefined;
    }
);

/** Read a request document; `{ error }` is the text of a parse-error (code 2) reply. */
export function readRequest(xml: string): WorldpayRequest | { error: string } {
  if (!/<!DOCTYPE\s+paymentService\b/.test(xml)) return { error: 'Document is invalid: no grammar found.' };
  let root: XmlNode | undefined;
  try {
    root = parsePaymentService(xml);
  } catch {
    return { error: 'The markup in the document is not well-formed.' };
  }
  if (!root || attr(root, 'version') !== WORLDPAY_VERSION) return { error: 'Root element must be paymentService version 1.4.' };
  const merchantCode = attr(root, 'merchantCode') ?? '';
  const order = child(root, 'submit', 'order');
  if (order) return { merchantCode, op: 'submit', orderCode: attr(order, 'orderCode') ?? '', order: readOrder(order) };
  const inquiry = child(root, 'inquiry', 'orderInquiry') ?? (has(child(root, 'inquiry'), 'orderInquiry') ? {} : undefined);
  const mod = asNode(child(root, 'modify')?.orderModification);
  const orderCode = attr(inquiry ?? mod, 'orderCode');
  if ((inquiry || mod) && !orderCode) return { error: 'Attribute "orderCode" is required.' };
  if (inquiry && orderCode) return { merchantCode, op: 'inquiry', orderCode };
  if (mod && orderCode && has(mod, 'cancel')) return { merchantCode, op: 'cancel', orderCode };
  if (mod && orderCode && has(mod, 'refund')) {
    const refund = child(mod, 'refund');
    return { merchantCode, op: 'refund', orderCode, reference: attr(refund, 'reference') ?? '', amount: readRequestAmount(refund) };
  }
  const capture = child(mod, 'capture');
  if (mod && orderCode && has(mod, 'capture')) {
    const a = child(capture, 'amount');
    const value = attr(a, 'value') ?? '';
    const currencyCode = attr(a, 'currencyCode') ?? '';
    const ok = /^\d{1,15}$/.test(value) && /^[A-Z]{3}$/.test(currencyCode) && has(capture, 'date');
    return {
      merchantCode,
      op: 'capture',
      orderCode,
      amount: ok ? { value: Number(value), currencyCode, exponent: attr(a, 'exponent') ?? '' } : undefined,
    };
  }
  return { error: 'The content of element type "paymentService" is incomplete or not supported by the sandbox.' };
}

function readRequestAmount(parent: XmlNode | undefined): { value: number; currencyCode: string; exponent: string } | undefined {
  const a = child(parent, 'amount');
  const value = attr(a, 'value') ?? '';
  const currencyCode = attr(a, 'currencyCode') ?? '';
  if (!/^\d{1,15}$/.test(value) || !/^[A-Z]{3}$/.test(currencyCode)) return undefined;
  return { value: Number(value), currencyCode, exponent: attr(a, 'exponent') ?? '' };
}

function readOrder(order: XmlNode): SubmittedOrder | undefined {
  const amount = child(order, 'amount');
  const card = child(order, 'paymentDetails', 'CARD-SSL');
  const date = child(card, 'expiryDate', 'date');
  const description = textOf(order.description);
  const value = attr(amount, 'value') ?? '';
  const currency = attr(amount, 'currencyCode') ?? '';
  const holderName = textOf(card?.cardHolderName);
  const orderCode = attr(order, 'orderCode') ?? '';
  // What Worldpay's DTD requires of an order (description may be empty, the element may not be missing).
  if (!orderCode || orderCode.length > 64 || description === undefined || !holderName || !date) return undefined;
  if (!/^\d{1,15}$/.test(value) || !/^[A-Z]{3}$/.test(currency)) return undefined;
  return {
    description,
    value: Number(value),
    currency,
    exponent: attr(amount, 'exponent') ?? '',
    cardNumber: textOf(card?.cardNumber) ?? '',
    holderName,
    month: Number(attr(date, 'month')),
    year: Number(attr(date, 'year')),
  };
}
