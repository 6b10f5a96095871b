/**
 * Masking of card- and secret-shaped data, applied to every log line (and reusable for DLQ
 * attributes and error details). Two layers:
 *   1. keys: any property whose name looks like card data or a secret is censored whatever its value;
 *   2. values: any run of 13-19 digits (spaces or dashes allowed between groups) that passes the
 *      Luhn check is masked to its last four digits, wherever it appears (messages, error texts).
 */

const SENSITIVE_KEY =
  /^(card(_?number)?|number|pan|cvc|cvv|cvv2|cvc2|security_?code|exp_?(month|year)|cardholder_?name|password|passphrase|secret|client_?secret|api_?key|apikey|authorization|cookie|private_?key|passcode|decrypted.*|token_?value)$/i;

/** True for keys whose values must never be written anywhere. */
export function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEY.test(key);
}

const DIGIT_RUN = /(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])/g;

function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** Mask every Luhn-valid 13-19 digit run in `text`, keeping the last four digits. */
export function maskPans(text: string): string {
  return text.replace(DIGIT_RUN, (run) => {
    const digits = run.replace(/[ -]/g, '');
    if (digits.length < 13 || digits.length > 19 || !luhnValid(digits)) return run;
    return `${'*'.repeat(digits.length - 4)}${digits.slice(-4)}`;
  });
}

export const CENSORED = '[REDACTED]';

/** Deep copy of `value` with sensitive keys censored and PAN-shaped strings masked. Cycle-safe. */
export function redactDeep(value: unknown, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return maskPans(value);
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, seen));
  if (value instanceof Error) {
    return { type: value.name, message: maskPans(value.message), stack: value.stack ? maskPans(value.stack) : undefined };
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSensitiveKey(k) ? CENSORED : redactDeep(v, seen);
  }
  return out;
}
