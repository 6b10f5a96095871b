/**
 * Unit: the pieces of dead-letter handling that need no queue — what a worker puts on a letter
 * (within SQS's 10-attribute limit, which the emulator does not enforce), lineage parsing, the
 * snapshot rule, `--since`, and page cursors.
 */
import type { SQSClient, SendMessageCommandInput } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { DLQ_ATTRIBUTES, lineageAttributes, readLineage, sendToDlq } from '../../shared/core/dlq.js';
import { maskPans } from '../../shared/log/redact.js';
import { findCardData } from '../support/card-scan.js';
import { sinceOption } from '../../cli/commands/dlq-common.js';
import { byFailure, cursorOf, type DeadLetterView, isAfterCursor, matchId } from '../../cli/commands/dlq-letters.js';
import { snapshotStatus } from '../../cli/commands/dlq-pass.js';

function capturingSqs(): { sqs: SQSClient; sent: SendMessageCommandInput[] } {
  const sent: SendMessageCommandInput[] = [];
  const sqs = {
    send: async (cmd: { input: SendMessageCommandInput }) => {
      sent.push(cmd.input);
      return { MessageId: `dlq-${sent.length}` };
    },
  } as unknown as SQSClient;
  return { sqs, sent };
}

function view(over: Partial<DeadLetterView>): DeadLetterView {
  return {
    messageId: 'd',
    sourceMessageId: 's',
    code: 'X',
    detail: '',
    worker: 'auth',
    attempts: 1,
    failedAt: null,
    sourceQueue: null,
    groupId: 'g',
    movedBySqs: false,
    sentAt: null,
    bodyBytes: 0,
    redrives: 0,
    lineage: [],
    redriveRun: null,
    ...over,
  };
}

describe('sendToDlq', () => {
  it('records the source message id, and copies a redriven message’s count and lineage without incrementing, in at most 10 attributes', async () => {
    const { sqs, sent } = capturingSqs();
    const redriven = {
      MessageId: 'm2',
      Body: '{}',
      Attributes: { MessageGroupId: 'ch-1' },
      MessageAttributes: lineageAttributes(3, { ids: ['m1', 'd1'], run: 'run-7' }),
    };
    const out = await sendToDlq(sqs, {
      dlqUrl: 'q',
      sourceQueue: 'auth-requests',
      worker: 'auth',
      message: redriven,
      letter: { code: 'UNKNOWN_PROCESSOR', detail: 'card 4242424242424242 refused', attempts: 2 },
    });
    expect(out).toEqual({ dlqMessageId: 'dlq-1', redrives: 3 });
    const attrs = sent[0]!.MessageAttributes!;
    expect(Object.keys(attrs).length).toBeLessThanOrEqual(10);
    expect(attrs[DLQ_ATTRIBUTES.sourceMessageId]?.StringValue).toBe('m2');
    expect(attrs[DLQ_ATTRIBUTES.redrives]?.StringValue).toBe('3');
    expect(readLineage(attrs)).toEqual({ redrives: 3, lineage: { ids: ['m1', 'd1'], run: 'run-7' } });
    expect(attrs[DLQ_ATTRIBUTES.detail]?.StringValue).not.toContain('4242424242424242');

    // A first failure carries neither a count nor a lineage.
    await sendToDlq(sqs, {
      dlqUrl: 'q',
      sourceQueue: 'auth-requests',
      worker: 'auth',
      message: { MessageId: 'm9', Body: '{}', Attributes: { MessageGroupId: 'ch-9' } },
      letter: { code: 'INVALID_MESSAGE', detail: 'x', attempts: 1 },
    });
    expect(Object.keys(sent[1]!.MessageAttributes!)).not.toContain(DLQ_ATTRIBUTES.redrives);
    expect(Object.keys(sent[1]!.MessageAttributes!)).not.toContain(DLQ_ATTRIBUTES.lineage);
  });

  it('reads malformed lineage attributes (anyone can send attributes) as none, and keeps a long lineage bounded', () => {
    const s = (v: string) => ({ DataType: 'String', StringValue: v });
    expect(readLineage({ [DLQ_ATTRIBUTES.redrives]: s('many'), [DLQ_ATTRIBUTES.lineage]: s('{not json') })).toEqual({
      redrives: 0,
      lineage: { ids: [], run: null },
    });
    expect(readLineage({ [DLQ_ATTRIBUTES.lineage]: s('{"ids":[1,"ok","has space"],"run":{}}') }).lineage).toEqual({
      ids: ['ok'],
      run: null,
    });
    const ids = Array.from({ length: 100 }, (_, i) => `id-${i}`);
    const kept = readLineage(lineageAttributes(50, { ids, run: 'r' })).lineage.ids;
    expect(kept).toHaveLength(40);
    expect(kept.slice(0, 2)).toEqual(['id-0', 'id-1']);
    expect(kept.at(-1)).toBe('id-99');
  });
});

describe('ids in logs', () => {
  it('a message id survives the card-number filter of every log line, even when its digits look like a card number', () => {
    // Its digit groups chain into 13358527142548, a Luhn-valid run: masked on main, so `dlq show
    // <the id from the log>` found nothing. About one UUID in 350 is like this.
    const id = 'a1a13358-5271-4254-8a56-f71d34d1f80d';
    const line = `{"messageId":"${id}","detail":"card 4242 4242 4242 4242 declined"}`;
    expect(maskPans(line)).toBe(`{"messageId":"${id}","detail":"card ************4242 declined"}`);
    expect(findCardData(id)).toEqual([]);
    // A card number is still found and masked wherever else it is, all-digit "UUIDs" included.
    expect(maskPans('42424242-4242-4242-4242-424242424242')).not.toContain('42424242-4242-4242');
    expect(findCardData(`${id} 4242424242424242`)).toEqual(['card number ending 4242']);
  });
});

describe('the snapshot rule and letter ids', () => {
  it('a run acts only on letters on the DLQ before it started, never on its own re-failures', () => {
    const start = Date.parse('2026-11-26T10:00:00Z');
    expect(snapshotStatus(view({ sentAt: '2026-11-26T09:59:59.000Z' }), start, 'run-1')).toBe('snapshot');
    expect(snapshotStatus(view({ sentAt: '2026-11-26T10:00:01.000Z' }), start, 'run-1')).toBe('after-start');
    // Whatever the clocks say, a letter carrying this run's id is its own re-failure.
    expect(snapshotStatus(view({ sentAt: '2026-11-26T09:00:00.000Z', redriveRun: 'run-1' }), start, 'run-1')).toBe(
      'own-refailure',
    );
    expect(snapshotStatus(view({ sentAt: '2026-11-26T09:00:00.000Z', redriveRun: 'run-0' }), start, 'run-1')).toBe('snapshot');
  });

  it('an id names a letter by its DLQ id, its source message id or an earlier id', () => {
    const v = view({ messageId: 'd2', sourceMessageId: 'm2', lineage: ['m1', 'd1'] });
    expect(['d2', 'm2', 'd1', 'm1', 'x'].map((id) => matchId(v, id))).toEqual(['dlq', 'source', 'lineage', 'lineage', null]);
  });

  it('--since takes an age or an ISO-8601 time', () => {
    const now = Date.parse('2026-11-26T10:00:00Z');
    expect(sinceOption('90s', now)).toBe(now - 90_000);
    expect(sinceOption('2h', now)).toBe(now - 7_200_000);
    expect(sinceOption('2026-11-25T08:00:00Z', now)).toBe(Date.parse('2026-11-25T08:00:00Z'));
    expect(() => sinceOption('yesterday', now)).toThrow(/ISO-8601/);
    expect(() => sinceOption('5w', now)).toThrow();
  });

  it('a cursor resumes after its letter even when letters share a failure time, and when that letter is gone', () => {
    const t = '2026-11-26T10:00:00.000Z';
    const letters = ['c', 'a', 'd', 'b'].map((id) => view({ messageId: id, failedAt: t })).sort(byFailure);
    expect(letters.map((l) => l.messageId)).toEqual(['a', 'b', 'c', 'd']);
    const cursor = cursorOf(letters[1]!);
    expect(letters.filter((l) => isAfterCursor(l, cursor)).map((l) => l.messageId)).toEqual(['c', 'd']);
    const withoutB = letters.filter((l) => l.messageId !== 'b');
    expect(withoutB.filter((l) => isAfterCursor(l, cursor)).map((l) => l.messageId)).toEqual(['c', 'd']);
  });
});
