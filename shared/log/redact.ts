import { luhnChecksumValid } from '../util/luhn.js';
/**
 * Masking of card- and secret-shaped data, applied to every log line (and reusable for DLQ
 * attributes and error details). Two layers:
 *   1. keys: any property whose name looks like card data or a secret is censored whatever its value;
 *   2. values: any run of 13-19 digits (spaces or dashes allowed between groups) that passes the
 *      Luhn check is masked to its last four digits, wherever it appears (messages, error texts),
 *      even when other digit groups adjoin it (an expiry date, a timestamp).
 */

const SENSITIVE_KEY =
  /^(card(_?number)?|number|pan|cvc|cvv|cvv2|cvc2|security_?code|exp_?(month|year)|cardholder_?name|password|passphrase|secret|client_?secret|api_?key|apikey|authorization|cookie|private_?key|passcode|decrypted.*|token_?value)$/i;

/** True for keys whose values must never be written anywhere. */
export function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEY.test(key);
}

/**
 * Maximal runs of digit groups joined by single spaces or dashes. A PAN may sit inside a longer
 * run ("4242 4242 4242 4242 12/30", "2024-01-15 4242424242424242"), so each run is searched for
 * spans of whole groups rather than tested as one number.
 */
const DIGIT_GROUPS = /(?<!\d)\d+(?:[ -]\d+)*(?!\d)/g;

/**
 * UUIDs (SQS message ids, request ids) are hex, not card numbers, but about one in 350 has digit
 * groups that chain into a Luhn-valid 13-19 digit run ("a1a13358-5271-4254-8a56-…"). Masking those
 * would corrupt the very ids operators search for (`payfleet dlq show <messageId from the log>`),
 * so UUID-shaped tokens with at least one hex letter are left whole. A PAN is never written in the
 * 8-4-4-4-12 hex shape.
 */
export const UUID_SHAPED =
  /(?<![0-9a-z])(?=[0-9a-f-]{0,35}[a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z])/gi;

/** Mask every Luhn-valid 13-19 digit span of whole digit groups in `text`, keeping the last four digits. */
export function maskPans(text: string): string {
  let out = '';
  let last = 0;
  for (const m of text.matchAll(UUID_SHAPED)) {
    out += maskDigitRuns(text.slice(last, m.index)) + m[0];
    last = m.index + m[0].length;
  }
  return out + maskDigitRuns(text.slice(last));
}

function maskDigitRuns(text: string): string {
  return text.replace(DIGIT_GROUPS, (run) => {
    if (run.length < 13) return run;
    const groups = run.split(/([ -])/); // digits at even indexes, separators at odd ones
    let out = '';
    let i = 0;
    while (i < groups.length) {
      // The longest span of groups starting at i that is a Luhn-valid 13-19 digit number.
      let end = -1;
      let digits = '';
      for (let j = i; j < groups.length && digits.length <= 19; j += 2) {
        digits += groups[j];
        if (digits.length >= 13 && digits.length <= 19 && luhnChecksumValid(digits)) end = j;
      }
      if (end >= 0) {
        const pan = groups
          .slice(i, end + 1)
          .filter((_, k) => k % 2 === 0)
          .join('');
        out += `${'*'.repeat(pan.length - 4)}${pan.slice(-4)}`;
        i = end + 1;
      } else {
        out += groups[i];
        i += 1;
      }
      if (i < groups.length) out += groups[i]; // the separator after the group or span
      i += 1;
    }
    return out;
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
