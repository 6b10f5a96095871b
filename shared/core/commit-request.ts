/**
 * What a commit request must be, whichever OutcomeStore commits it (DynamoDB or in memory): the
 * rules checked before anything is written (InvalidCommitError / CommitTooLargeError, nothing
 * sent), and what makes two requests "the same request" for an idempotent resend.
 */
import { createHash } from 'node:crypto';
import { maskPans } from '../log/redact.js';
import { TABLES } from '../resources.js';
import { CommitTooLargeError, InvalidCommitError } from './errors.js';
import type { CommitRequest, EntityChange } from './ports.js';
import { isEngineAttribute, sameRow } from './row-lease.js';

/** DynamoDB's limit on items in one transaction. */
export const MAX_TRANSACT_ITEMS = 100;
/** Attributes the commit owns on every entity. */
const MANAGED = new Set(['version', 'eventSeq']);
/** Keys that only card data has; names like cardholder_name are the workers' call, not ours. */
const CARD_KEY = /^(card_?number|pan|cvc|cvv2?|cvc2|security_?code|decrypted.*)$/i;
const WHOLE_PAN = /^\d(?:[ -]?\d){12,18}$/;

/** What identifies a request: everything but the lease's expiry (renewals move it). */
function requestIdentity(req: CommitRequest): unknown {
  const { lease, ...rest } = req;
  return { ...rest, lease: lease ? { key: lease.key, owner: lease.owner, fencingToken: lease.fencingToken } : undefined };
}

/** The same request, resent: equal fingerprints (the lease's expiry aside). */
export function commitFingerprint(req: CommitRequest): string {
  return sha256(stableJson(requestIdentity(req)));
}

/** Everything that can be known wrong before sending. Throws InvalidCommitError / CommitTooLargeError. */
export function validateCommit(req: CommitRequest): void {
  const problems: string[] = [];
  const seenItems = new Set<string>();
  const seenResources = new Set<string>();
  const row = req.lease?.row;
  if (req.release && !row) problems.push('release: only a row lease is released by a commit');
  if (row && req.changes.length === 0 && !req.workItem && !req.release) problems.push('nothing to commit');
  // A row lease rides on its row's item (one more item only when no change touches that row).
  let count = row
    ? req.changes.some((c) => sameRow(row, c))
      ? 0
      : 1
    : (req.lease ? 1 : 0) + (req.workItem ? 1 : 0);
  req.changes.forEach((c: EntityChange, i) => {
    const at = `changes[${i}]`;
    const def = TABLES[c.table];
    if (!def || !['charges', 'refunds', 'payouts', 'batches'].includes(c.table)) {
      problems.push(`${at}: unknown table ${String(c.table)}`);
      return;
    }
    const keyNames = [def.partitionKey.name, ...(def.sortKey ? [def.sortKey.name] : [])];
    const given = Object.keys(c.key);
    if (given.length !== keyNames.length || !keyNames.every((k) => typeof c.key[k] === 'string' && c.key[k] !== '')) {
      problems.push(`${at}: key must be exactly ${keyNames.join(' + ')} (non-empty strings)`);
    }
    for (const k of keyNames) {
      if (k in c.set && c.set[k] !== c.key[k]) problems.push(`${at}: set.${k} differs from the key`);
      if (c.remove?.includes(k)) problems.push(`${at}: cannot remove key attribute ${k}`);
    }
    const id = `${c.table}:${stableJson(c.key)}`;
    if (seenItems.has(id)) problems.push(`${at}: ${id} appears twice (one item per transaction)`);
    seenItems.add(id);
    if (!Number.isInteger(c.expectedVersion) || c.expectedVersion < 0)
      problems.push(`${at}: expectedVersion must be an integer >= 0`);
    for (const k of [...Object.keys(c.set), ...(c.remove ?? [])]) {
      if (MANAGED.has(k)) problems.push(`${at}: ${k} is written by the commit, not by set/remove`);
      if (isEngineAttribute(k)) problems.push(`${at}: ${k} belongs to the row lease, not to the entity`);
    }
    if (req.lease?.row && sameRow(req.lease.row, c) && c.expectedVersion === 0) {
      problems.push(`${at}: the leased row exists already; it cannot be created by this commit`);
    }
    const events = c.events ?? [];
    const cur = c.currentEventSeq ?? 0;
    if (!Number.isInteger(cur) || cur < 0) problems.push(`${at}: currentEventSeq must be an integer >= 0`);
    if (c.expectedVersion === 0 && cur !== 0) problems.push(`${at}: a new entity has no events yet (currentEventSeq must be 0)`);
    if (events.length > 0 && !c.resource) problems.push(`${at}: events need a resource`);
    if (c.resource && events.length > 0) {
      if (seenResources.has(c.resource.id)) problems.push(`${at}: resource ${c.resource.id} emits events in two changes`);
      seenResources.add(c.resource.id);
    }
    findCardData(c.set, `${at}.set`, problems);
    for (const [j, e] of events.entries()) findCardData(e.details, `${at}.events[${j}].details`, problems);
    count += 1 + (c.resource ? events.length : 0);
  });
  if (req.workItem?.result) findCardData(req.workItem.result, 'workItem.result', problems);
  if (count > MAX_TRANSACT_ITEMS) throw new CommitTooLargeError(count, MAX_TRANSACT_ITEMS);
  if (count === 0) problems.push('nothing to commit');
  if (problems.length > 0) throw new InvalidCommitError(problems);
}

/** Card-number keys, or whole strings that are Luhn-valid 13-19 digit runs, anywhere in `value`. */
function findCardData(value: unknown, path: string, problems: string[]): void {
  if (typeof value === 'string') {
    if (WHOLE_PAN.test(value) && maskPans(value) !== value) problems.push(`${path}: looks like a card number`);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  for (const [k, v] of Object.entries(value)) {
    if (CARD_KEY.test(k) && v !== undefined && v !== null) problems.push(`${path}.${k}: card data must never be stored`);
    findCardData(v, Array.isArray(value) ? `${path}[${k}]` : `${path}.${k}`, problems);
  }
}

export function definedOnly(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** JSON with object keys sorted, so equal requests hash equal. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : stableJson(v))).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
