/**
 * Command: reading and deleting dead letters at scale with the real binary — `dlq list` filters
 * (--code, --since) and pages past 1,000 letters without overlap or gaps; `dlq purge` has a dry
 * run, states what it will delete, and exports each letter as NDJSON before deleting it.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { setupTestStack, type TestStack } from '../support/stack.js';
import { type Listed, listLetters, putLetters, times } from './dlq-support.js';
import { json, runCli } from './support.js';

const stacks: TestStack[] = [];
async function freshStack(label: string): Promise<TestStack> {
  const s = await setupTestStack(label);
  stacks.push(s);
  return s;
}
afterAll(() => {
  for (const s of stacks) s.close();
});

/** Follow `next` cursors from the first page to the last. */
async function allPages(s: TestStack, extra: string[]): Promise<Listed[]> {
  const pages = [await listLetters(s, extra)];
  while (pages.at(-1)!.next) pages.push(await listLetters(s, [...extra, '--after', pages.at(-1)!.next!]));
  return pages;
}

describe('payfleet dlq list', () => {
  it('filters by --code and --since, and pages with --limit/--after without gaps or overlap', async () => {
    const s = await freshStack('dlqlist');
    const threeHoursAgo = new Date(Date.now() - 3 * 3_600_000);
    const old = await putLetters(s, times(15, { code: 'TOKEN_UNKNOWN', failedAt: threeHoursAgo }));
    const recent = await putLetters(s, [...times(6, { code: 'TOKEN_UNKNOWN' }), ...times(4, { code: 'UNKNOWN_PROCESSOR' })]);

    const everything = await listLetters(s);
    expect(everything).toMatchObject({ total: 25, count: 25, next: null, byCode: { TOKEN_UNKNOWN: 21, UNKNOWN_PROCESSOR: 4 } });
    const byCode = await listLetters(s, ['--code', 'unknown_processor']);
    expect(byCode.letters.map((l) => l.code)).toEqual(Array(4).fill('UNKNOWN_PROCESSOR'));
    const since = await listLetters(s, ['--since', '1h']);
    expect(since.letters.map((l) => l.sourceMessageId).sort()).toEqual([...recent].sort());
    const sinceIso = await listLetters(s, [
      '--since',
      new Date(threeHoursAgo.getTime() - 1000).toISOString(),
      '--code',
      'TOKEN_UNKNOWN',
    ]);
    expect(sinceIso.total).toBe(21);
    expect((await runCli(['dlq', 'list', 'auth-requests', '--since', 'yesterday'], s.env)).code).toBe(2);

    // Pages of 10: 10 + 10 + 5, oldest failure first, each letter exactly once.
    const pages = await allPages(s, ['--limit', '10']);
    expect(pages.map((p) => p.count)).toEqual([10, 10, 5]);
    const ids = pages.flatMap((p) => p.letters.map((l) => l.messageId));
    expect(new Set(ids).size).toBe(25);
    expect(ids).toEqual(everything.letters.map((l) => l.messageId));
    expect(
      pages[0]!.letters
        .slice(0, 10)
        .map((l) => l.sourceMessageId)
        .every((id) => old.includes(id!)),
    ).toBe(true);
    const filteredPages = await allPages(s, ['--limit', '4', '--code', 'TOKEN_UNKNOWN', '--since', '1h']);
    expect(filteredPages.map((p) => p.count)).toEqual([4, 2]);
    // The human listing says how to get the next page.
    const human = await runCli(['dlq', 'list', 'auth-requests', '--limit', '10'], s.env);
    expect(human.stdout).toContain('25 dead letter(s)');
    expect(human.stdout).toMatch(/next page: payfleet dlq list auth-requests --limit 10 --after \S+/);
  }, 120_000);

  it('lists past 1,000 letters', async () => {
    const s = await freshStack('dlqbig');
    await putLetters(s, [...times(1003, { code: 'TOKEN_UNKNOWN' }), ...times(2, { code: 'UNKNOWN_PROCESSOR' })]);
    const first = await listLetters(s);
    expect(first).toMatchObject({ total: 1005, count: 1000, byCode: { TOKEN_UNKNOWN: 1003, UNKNOWN_PROCESSOR: 2 } });
    const second = await listLetters(s, ['--after', first.next!]);
    expect(second).toMatchObject({ total: 1005, count: 5, next: null });
    expect(new Set([...first.letters, ...second.letters].map((l) => l.messageId)).size).toBe(1005);
  }, 180_000);
});

describe('payfleet dlq purge', () => {
  it('--dry-run deletes nothing; the prompt states the count by code; --export keeps every deleted letter as NDJSON', async () => {
    const s = await freshStack('dlqpurge');
    const bodies = ['{"a":1}', '{"a":2,  "spaced":"caf\u00e9"}', '{"a":3}'];
    const purgedIds = await putLetters(
      s,
      bodies.map((body) => ({ code: 'TOKEN_UNKNOWN', body })),
    );
    await putLetters(s, times(2, { code: 'UNKNOWN_PROCESSOR' }));

    const dry = await runCli(['dlq', 'purge', 'auth-requests', '--code', 'TOKEN_UNKNOWN', '--dry-run'], s.env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/dry run: would delete 3 dead letter\(s\) from \S+: 3 TOKEN_UNKNOWN/);
    expect((await listLetters(s)).total).toBe(5);

    const refused = await runCli(['dlq', 'purge', 'auth-requests', '--code', 'TOKEN_UNKNOWN'], s.env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refusing to purge 3 dead letter\(s\) in \S+ \(3 TOKEN_UNKNOWN\) without --yes/);

    const dir = mkdtempSync(join(tmpdir(), 'payfleet-purge-'));
    const file = join(dir, 'letters.ndjson');
    const purged = await runCli(
      ['dlq', 'purge', 'auth-requests', '--code', 'TOKEN_UNKNOWN', '--yes', '--export', file, '--json'],
      s.env,
    );
    expect(purged.code).toBe(0);
    expect(json<{ deleted: number; byCode: Record<string, number> }>(purged)).toMatchObject({
      deleted: 3,
      byCode: { TOKEN_UNKNOWN: 3 },
    });
    const exported = readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .map(
        (line) => JSON.parse(line) as { sourceMessageId: string; code: string; body: string; attributes: Record<string, string> },
      );
    expect(exported.map((e) => e.sourceMessageId).sort()).toEqual([...purgedIds].sort());
    expect(exported.map((e) => e.body).sort()).toEqual([...bodies].sort());
    for (const e of exported) expect(e.attributes['payfleet-error-code']).toBe('TOKEN_UNKNOWN');
    const left = await listLetters(s);
    expect(left.byCode).toEqual({ UNKNOWN_PROCESSOR: 2 });

    // An export never overwrites; `list --ndjson` exports without deleting.
    writeFileSync(join(dir, 'exists.ndjson'), '');
    expect((await runCli(['dlq', 'purge', 'auth-requests', '--yes', '--export', join(dir, 'exists.ndjson')], s.env)).code).toBe(
      2,
    );
    const ndjson = await runCli(['dlq', 'list', 'auth-requests', '--ndjson'], s.env);
    expect(
      ndjson.stdout
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { code: string }).code),
    ).toEqual(['UNKNOWN_PROCESSOR', 'UNKNOWN_PROCESSOR']);
  }, 120_000);
});
