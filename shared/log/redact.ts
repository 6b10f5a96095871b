import { luhnChecksumValid } from '../util/luhn.js';
/**
 * Masking of card- and secret-shaped data, applied to every log line (and reusable for DLQ
 * attributes and error details). Two layers:
 *   1. keys: any property whose name looks like card data or a secret is censored whatever its value;
 *   2. values: any run of 13-19 digits (spaces or dashes allowed between groups) that passes the
 *      Luhn check is masked to its last four digits, wherever it appears (messages, error texts),
 *      even when other digit groups adjoin it (an expiry date, a timestamp).
 *
 * One exception, because one in ten epoch-millisecond timestamps passes the Luhn check and masking
 * them hid lease expiries (`held by ... until *********7280`): a run of exactly 13 digits that is
 * a plausible current epoch-ms value (2015-2040, so it starts 14..22) right after a time word —
 * a field named like a time (`expiresAtMs`, `createdAt`, `until`, `ts` ...) or, in free text,
 * `until`, `since`, `at`, `expires` ... — is a timestamp. No card is lost by this: 13-digit PANs
 * are Visa's and start with 4, and every 14-19 digit run is masked as before.
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
 * so UUID-shaped tokens with at least one hex letter are left whole, and so are the same 32 hex
 * digits without dashes (payout batch ids, the LHV idempotency key). A PAN is never written in
 * either shape.
 */
export const UUID_SHAPED =
  /(?<![0-9a-z])(?:(?=[0-9a-f-]{0,35}[a-f])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?=[0-9a-f]{0,31}[a-f])[0-9a-f]{32})(?![0-9a-z])/gi;

/** 2015-01-01 and 2040-01-01 in epoch ms: "plausibly now" for a timestamp in a log line. */
const EPOCH_MS_MIN = 1_420_070_400_000;
const EPOCH_MS_MAX = 2_208_988_800_000;

/**
 * Names that say "this is a point in time": `time`, `ts`, `until` ... as a whole word, or an
 * identifier ending in `At`, `AtMs`, `Ms`, `Time`, `Until`, `Since`, `_at`, `_ms` (`expiresAtMs`,
 * `startedAt`, `doNotRetryUntil`, `created_at`).
 */
const TIME_WORD = /^(?:time|ts|timestamp|until|since|at|after|before|deadline|expires|expiry|now|date)$/i;
const TIME_SUFFIX = /(?:At|AtMs|Ms|Time|Timestamp|Until|Since|Deadline|Expiry|_at|_ms|_time|_ts)$/;

/** The name just before a value: a JSON key (`"expiresAtMs":`, `"until":"`) or a word (`until `, `at=`). */
const NAME_BEFORE = /(?:"([A-Za-z_$][\w$]*)"\s*:\s*"?|([A-Za-z_$][\w$]*)\s*[:=]?\s*"?)$/;

/** True when `name` says its value is a point in time. */
export function isTimeName(name: string): boolean {
  return TIME_WORD.test(name) || TIME_SUFFIX.test(name);
}

/** True for exactly 13 digits that read as epoch milliseconds between 2015 and 2040. */
function plausibleEpochMs(digits: string): boolean {
  if (!/^\d{13}$/.test(digits)) return false;
  const n = Number(digits);
  return n >= EPOCH_MS_MIN && n < EPOCH_MS_MAX;
}

/**
 * True when `digits`, found at `index` of `text`, is a timestamp rather than a card number: a
 * plausible epoch-ms value right after a time name (see the module comment). Shared with the test
 * suite's log scan, so both agree on what is a card.
 */
export function isTimestampInContext(text: string, index: number, digits: string): boolean {
  if (!plausibleEpochMs(digits)) return false;
  const m = NAME_BEFORE.exec(text.slice(Math.max(0, index - 64), index));
  const name = m?.[1] ?? m?.[2];
  return name !== undefined && isTimeName(name);
}

/**
 * Mask every Luhn-valid 13-19 digit span of whole digit groups in `text`, keeping the last four
 * digits. UUID-shaped tokens are left whole; `timeField`: `text` is the whole value of a field named
 * like a time, so a lone plausible epoch-ms value is kept.
 */
export function maskPans(text: string, options: { timeField?: boolean } = {}): string {
  if (options.timeField && plausibleEpochMs(text)) return text;
  let out = '';
  let last = 0;
  for (const m of text.matchAll(UUID_SHAPED)) {
    out += maskDigitRuns(text, last, m.index) + m[0];
    last = m.index + m[0].length;
  }
  return out + maskDigitRuns(text, last, text.length);
}

/** Mask the card-shaped digit runs of `whole` between `from` and `to` (context read from `whole`). */
function maskDigitRuns(whole: string, from: number, to: number): string {
  return whole.slice(from, to).replace(DIGIT_GROUPS, (run: string, offset: number) => {
    if (run.length < 13) return run;
    if (isTimestampInContext(whole, from + offset, run)) return run;
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
    if (isSensitiveKey(k)) out[k] = CENSORED;
    else if (typeof v === 'string' && isTimeName(k)) out[k] = maskPans(v, { timeField: true });
    else out[k] = redactDeep(v, seen);
  }
  return out;
}
