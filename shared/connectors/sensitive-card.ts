/**
 * A decrypted card that refuses to leave the process by accident.
 *
 * Card data must never appear in logs, DLQs, tables or events (docs/contract.md §6). Masking at the log
 * sink is the last line of defence; this type is the first: it has no enumerable own properties,
 * serialises to the marker `'[SensitiveCard]'` (JSON, `toString`, `util.inspect`), and throws on
 * coercion to a primitive (`${card}`, `card + ''`, `card == x`), so the usual ways a value escapes
 * into a string either show nothing or fail loudly in tests.
 *
 * Only a connector building the processor request calls {@link SensitiveCard.reveal}. The owner
 * calls {@link SensitiveCard.dispose} as soon as the processor call is done.
 */
import { inspect } from 'node:util';

/** The card fields as the Payment Token Service returns them (docs/contract.md §7). */
export interface CardFields {
  /** 12-19 digits, no separators. */
  readonly number: string;
  /** 1-12. */
  readonly exp_month: number;
  /** Four digits. */
  readonly exp_year: number;
  /** 3-4 digits. */
  readonly cvc: string;
  readonly cardholder_name: string;
}

/** Card network, from the BIN; safe to log. */
export type CardBrand = 'visa' | 'mastercard' | 'amex' | 'discover' | 'diners' | 'jcb' | 'unionpay' | 'maestro' | 'unknown';

const MARKER = '[SensitiveCard]';

/**
 * Card network from the BIN (leading digits). Ranges as published by the schemes; order matters
 * where ranges overlap (Discover's 622126-622925 sits inside UnionPay's 62).
 */
export function brandOf(number: string): CardBrand {
  const n2 = Number(number.slice(0, 2));
  const n3 = Number(number.slice(0, 3));
  const n4 = Number(number.slice(0, 4));
  const n6 = Number(number.slice(0, 6));
  if (number.startsWith('4')) return 'visa';
  if ((n2 >= 51 && n2 <= 55) || (n4 >= 2221 && n4 <= 2720)) return 'mastercard';
  if (n2 === 34 || n2 === 37) return 'amex';
  if (n4 === 6011 || n2 === 65 || (n3 >= 644 && n3 <= 649) || (n6 >= 622126 && n6 <= 622925)) return 'discover';
  if (n4 >= 3528 && n4 <= 3589) return 'jcb';
  if (n2 === 36 || n2 === 38 || n2 === 39 || (n3 >= 300 && n3 <= 305)) return 'diners';
  if (n2 === 62) return 'unionpay';
  if (n2 === 50 || (n2 >= 56 && n2 <= 58) || n2 === 63 || n2 === 67) return 'maestro';
  return 'unknown';
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Holder of one decrypted card. Construct it only from a freshly decrypted token; never store it.
 *
 * Number and CVC are kept as byte arrays so {@link dispose} can zero them: JS strings are
 * immutable and cannot be overwritten, so the strings {@link reveal} hands out live until the GC
 * reclaims them — keep them in locals that go out of scope with the request.
 */
export class SensitiveCard {
  #number: Uint8Array | undefined;
  #cvc: Uint8Array | undefined;
  #expMonth: number | undefined;
  #expYear: number | undefined;
  #cardholderName: string | undefined;
  // Computed once: safe to expose and needed after dispose (e.g. for a log line after the call).
  readonly #last4: string;
  readonly #brand: CardBrand;

  constructor(fields: CardFields) {
    this.#number = encoder.encode(fields.number);
    this.#cvc = encoder.encode(fields.cvc);
    this.#expMonth = fields.exp_month;
    this.#expYear = fields.exp_year;
    this.#cardholderName = fields.cardholder_name;
    this.#last4 = fields.number.slice(-4);
    this.#brand = brandOf(fields.number);
    // No own properties can be added later (e.g. by a careless `Object.assign(card, fields)`).
    Object.freeze(this);
  }

  /** Last four digits of the PAN: PCI DSS allows showing them. */
  get last4(): string {
    return this.#last4;
  }

  /** Card network derived from the BIN. */
  get brand(): CardBrand {
    return this.#brand;
  }

  /** True once {@link dispose} ran. */
  get disposed(): boolean {
    return this.#number === undefined;
  }

  /**
   * The card fields, for a connector building its processor request. Do not log, store or pass on
   * the result. Throws a TypeError after {@link dispose}.
   */
  reveal(): CardFields {
    if (this.#number === undefined || this.#cvc === undefined) throw new TypeError('SensitiveCard was disposed');
    return Object.freeze({
      number: decoder.decode(this.#number),
      exp_month: this.#expMonth as number,
      exp_year: this.#expYear as number,
      cvc: decoder.decode(this.#cvc),
      cardholder_name: this.#cardholderName as string,
    });
  }

  /** Zero the held bytes and drop every field. Idempotent. `last4` and `brand` stay readable. */
  dispose(): void {
    this.#number?.fill(0);
    this.#cvc?.fill(0);
    this.#number = undefined;
    this.#cvc = undefined;
    this.#expMonth = undefined;
    this.#expYear = undefined;
    this.#cardholderName = undefined;
  }

  /** `JSON.stringify` (and pino) see only the marker. */
  toJSON(): string {
    return MARKER;
  }

  toString(): string {
    return MARKER;
  }

  [inspect.custom](): string {
    return MARKER;
  }

  /** Implicit coercion (`${card}`, `card + ''`, `card == 'x'`) is a bug: fail loudly. */
  [Symbol.toPrimitive](): never {
    throw new TypeError('SensitiveCard cannot be converted to a primitive');
  }

  valueOf(): never {
    throw new TypeError('SensitiveCard cannot be converted to a primitive');
  }
}
