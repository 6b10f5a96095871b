import { describe, expect, it } from 'vitest';
import { findCardData } from '../support/card-scan.js';

describe('findCardData (the suite-wide log scan run at teardown)', () => {
  it('finds card numbers and CVC fields, and not masked numbers, timestamps or ids', () => {
    expect(findCardData('{"msg":"declined 4242424242424242"}')).toEqual(['card number ending 4242']);
    expect(findCardData('card 4000 0000 0000 0002 exp 12/30')).toEqual(['card number ending 0002']);
    expect(findCardData('{"card":{"cvc":"123"}}')).toEqual(['a cvc field with digits']);
    expect(findCardData('{"msg":"card ************4242","time":"2026-11-21T07:43:09.123Z","seq":"00000000000000000001"}')).toEqual([]);
    expect(findCardData('{"cvc":"[REDACTED]","id":"4242424242424241"}')).toEqual([]);
  });
});
