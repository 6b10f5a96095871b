import type { Command } from 'commander';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import {
  EXIT,
  exitWith,
  filterFrom,
  type FilterOptions,
  intOption,
  letterRecord,
  short,
  target,
  type Target,
  withFilterOptions,
} from './dlq-common.js';
import {
  approximateDepth,
  byFailure,
  countByCode,
  cursorOf,
  describeCounts,
  type HeldLetter,
  isAfterCursor,
  LetterReader,
  matchesFilter,
  matchId,
} from './dlq-letters.js';
import { onInterrupt } from './dlq-pass.js';
import { registerPurge } from './dlq-purge.js';
import { registerRedrive } from './dlq-redrive.js';
import { printJson, printTable } from './output.js';

export type { DeadLetterView, HeldLetter } from './dlq-letters.js';

/**
 * Read every letter once and give them all back: a listing holds each letter for the pass only.
 * `stopWhen` ends the pass early (show). Ctrl-C gives back what is held, then exits 1.
 */
async function readAll(
  t: Target,
  stopWhen: (l: HeldLetter) => boolean = () => false,
): Promise<{ letters: HeldLetter[]; unlisted: number }> {
  const controller = new AbortController();
  const stopListening = onInterrupt(controller, 'giving back the letters read so far');
  const reader = new LetterReader(t.clients.sqs, t.urls.dlq, 30);
  const letters: HeldLetter[] = [];
  let unlisted = 0;
  try {
    reading: for (let batch = await reader.next(); batch !== null && !controller.signal.aborted; batch = await reader.next()) {
      for (const l of batch) {
        letters.push(l);
        if (stopWhen(l)) break reading;
      }
    }
    // While we hold them, whatever else the queue counts is hidden behind a held letter of the same
    // message group (letters SQS moved itself keep their source group) or held by someone else.
    unlisted = Math.max(0, (await approximateDepth(t.clients.sqs, t.urls.dlq).catch(() => 0)) - reader.held);
  } finally {
    await reader.releaseAll();
    stopListening();
  }
  if (controller.signal.aborted) exitWith(EXIT.failure, 'interrupted');
  return { letters, unlisted };
}

interface ListOptions extends FilterOptions {
  readonly limit: number;
  readonly after?: string;
  readonly json?: boolean;
  readonly ndjson?: boolean;
}

/** `payfleet dlq list|show|redrive|purge <queue>`: inspect and replay dead letters. */
export function registerDlq(program: Command): void {
  const dlq = program
    .command('dlq')
    .description('inspect and replay dead letters (list | show | redrive | purge)')
    .addHelpText(
      'after',
      `
<queue> is auth-requests, capture-requests or payout-events (or its -dlq name, with or without the
prefix and .fifo). Reading receives each letter with a short visibility and releases it at once, so
no one else is blocked for longer than a pass. A letter is named by its DLQ message id, by the
source message id the worker logged, or by any earlier id of it (before a redrive).
Error codes and what to do: docs/operations.md.`,
    );

  withFilterOptions(
    dlq
      .command('list')
      .description(
        'dead letters of a queue, oldest failure first: ids, code, worker, attempts, redrives, failed-at, group, detail',
      )
      .argument('<queue>', 'auth-requests | capture-requests | payout-events'),
  )
    .option('--limit <n>', 'letters per page', intOption, 1000)
    .option('--after <cursor>', 'the next page: the cursor a page ends with')
    .option('--json', 'print JSON')
    .option('--ndjson', 'print one letter per line with every attribute and its body (an export)')
    .action(async (queueArg: string, opts: ListOptions) => {
      const t = await target(queueArg);
      try {
        const { letters, unlisted } = await readAll(t);
        const filter = filterFrom(opts);
        const matching = letters.filter((l) => matchesFilter(filter, l.view)).sort((a, b) => byFailure(a.view, b.view));
        const after = opts.after ? matching.filter((l) => isAfterCursor(l.view, opts.after!)) : matching;
        const page = after.slice(0, opts.limit);
        const next = after.length > page.length ? cursorOf(page.at(-1)!.view) : null;
        const views = page.map((l) => l.view);
        const counts = countByCode(matching.map((l) => l.view));
        const nextCommand = next ? `payfleet dlq list ${t.key}${filterArgs(opts)} --limit ${opts.limit} --after ${next}` : '';
        if (opts.ndjson) {
          for (const l of page) process.stdout.write(`${JSON.stringify(letterRecord(t, l))}\n`);
          if (next) process.stderr.write(`more letters: ${nextCommand}\n`);
          return;
        }
        if (opts.json) {
          printJson({
            queue: t.dlqName,
            sourceQueue: t.sourceName,
            total: matching.length,
            count: views.length,
            next,
            truncated: next !== null,
            unlisted,
            byCode: Object.fromEntries(counts.map((c) => [c.code, c.count])),
            letters: views,
          });
          return;
        }
        const note =
          unlisted > 0
            ? `~${unlisted} more letter(s) wait behind listed letters of the same message group (or are being read by someone else); they are listed once those are redriven or purged\n`
            : '';
        if (matching.length === 0) {
          process.stdout.write(
            `${t.dlqName} ${letters.length > 0 ? 'has no dead letters matching the filter' : 'is empty'}\n${note}`,
          );
          return;
        }
        printTable(
          ['message id', 'source message id', 'code', 'worker', 'attempts', 'redrives', 'failed at', 'group', 'detail'],
          views.map((v) => [
            v.messageId,
            v.sourceMessageId,
            v.code,
            v.worker,
            v.attempts,
            v.redrives,
            v.failedAt ?? v.sentAt,
            short(v.groupId, 36),
            short(v.detail, 60),
          ]),
        );
        const first = matching.length - after.length + 1;
        process.stdout.write(`\n${matching.length} dead letter(s) in ${t.dlqName}: ${describeCounts(counts)}\n`);
        if (views.length < matching.length) process.stdout.write(`showing ${first}-${first + views.length - 1}\n`);
        if (next) process.stdout.write(`next page: ${nextCommand}\n`);
        process.stdout.write(note);
        process.stdout.write(`show one: payfleet dlq show ${t.key} <id>   replay: payfleet dlq redrive ${t.key} --id <id>\n`);
      } finally {
        t.clients.destroy();
      }
    });

  dlq
    .command('show')
    .description('one dead letter: every failure attribute, its lineage, and the original body byte for byte')
    .argument('<queue>', 'auth-requests | capture-requests | payout-events')
    .argument('<id>', 'its DLQ message id (dlq list), the source message id a worker logged, or an earlier id of it')
    .option('--body', 'print only the body, exactly as it was sent (no trailing newline)')
    .option('--json', 'print JSON')
    .action(async (queueArg: string, id: string, opts: { body?: boolean; json?: boolean }) => {
      const t = await target(queueArg);
      try {
        const { letters } = await readAll(t, (l) => matchId(l.view, id) !== null);
        const letter = letters.find((l) => matchId(l.view, id) !== null);
        if (!letter) exitWith(EXIT.notFound, `no dead letter ${id} in ${t.dlqName} (see \`payfleet dlq list ${t.key}\`)`);
        const matchedBy = matchId(letter.view, id);
        if (opts.body) {
          process.stdout.write(letter.body);
          return;
        }
        if (opts.json) {
          printJson({ ...letterRecord(t, letter), matchedBy, system: letter.message.Attributes ?? {} });
          return;
        }
        const v = letter.view;
        if (matchedBy !== 'dlq')
          process.stdout.write(
            `${id} is the ${matchedBy === 'source' ? 'source message id' : 'earlier id'} of dead letter ${v.messageId}\n\n`,
          );
        printTable(
          ['field', 'value'],
          [
            ['message id', v.messageId],
            ['source message id (worker logs)', v.sourceMessageId],
            ['error code', v.code],
            ['detail', v.detail],
            ['worker', v.worker],
            ['attempts', v.attempts],
            ['redrives', v.redrives],
            ['earlier ids', v.lineage.length > 0 ? v.lineage.join(' > ') : null],
            ['last redriven by run', v.redriveRun],
            ['failed at', v.failedAt],
            ['source queue', v.sourceQueue ?? t.sourceName],
            ['message group (restored by redrive)', v.groupId],
            ['on the DLQ since', v.sentAt],
            ['received from the DLQ', letter.message.Attributes?.ApproximateReceiveCount],
            ['body size', `${v.bodyBytes} bytes`],
          ],
        );
        const ours = Object.values(DLQ_ATTRIBUTES) as string[];
        const other = Object.entries(letter.message.MessageAttributes ?? {})
          .filter(([k]) => !ours.includes(k))
          .map(([k, a]) => [k, a.StringValue ?? null]);
        if (other.length > 0) {
          process.stdout.write('\nother message attributes:\n');
          printTable(['name', 'value'], other);
        }
        process.stdout.write(`\nbody (exactly as received; \`--body\` prints it alone):\n${letter.body}\n`);
      } finally {
        t.clients.destroy();
      }
    });

  registerRedrive(dlq);
  registerPurge(dlq);
}

/** The filter options as they would be typed again (for the next-page command). */
function filterArgs(opts: FilterOptions): string {
  return [
    ...(opts.id ?? []).map((id) => ` --id ${id}`),
    ...(opts.code ?? []).map((c) => ` --code ${c}`),
    ...(opts.since !== undefined ? [` --since ${new Date(opts.since).toISOString()}`] : []),
  ].join('');
}
