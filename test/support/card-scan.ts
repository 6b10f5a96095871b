import { UUID_SHAPED } from '../../shared/log/redact.js';
import { isCardNumber } from '../../shared/util/luhn.js';

const DIGIT_RUN = /(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)/g;
const CVC_FIELD = /"(cvc|cvv|cvc2|cvv2|security_?code)"\s*:\s*"?\d{3,4}/i;

/**
 * Card data in `text`: every Luhn-valid 13-19 digit run (spaces or dashes allowed between digits)
 * and any CVC-named field holding digits. Returns what was found, never the digits themselves.
 */
export function findCardData(text: string): string[] {
  const found: string[] = [];
  // Message and request ids (UUIDs) can hold Luhn-valid digit runs by chance: not card data.
  for (const m of text.replace(UUID_SHAPED, ' ').matchAll(DIGIT_RUN)) {
    const digits = m[0].replace(/[ -]/g, '');
    if (isCardNumber(digits)) found.push(`card number ending ${digits.slice(-4)}`);
  }
  const cvc = CVC_FIELD.exec(text);
  if (cvc) found.push(`a ${cvc[1]} field with digits`);
  return found;
}
