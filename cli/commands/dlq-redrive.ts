/** `payfleet dlq redrive <queue>`: put dead letters back on their source queue, once each, and say what happened. */
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import {
  EXIT,
  exitWith,
  filterFrom,
  type FilterOptions,
  intOption,
  rateOption,
  short,
  target,
  type Target,
  withFilterOptions,
} from './dlq-common.js';
import {
  approximateDepth,
  countByCode,
  DeleteAfterSendError,
  describeCounts,
  isFiltered,
  LetterReader,
  redriveDedupId,
  redriveLetter,
} from './dlq-letters.js';
import { chooseLetters, onInterrupt, type PassOutcome, ProgressLine, runPass, confirm } from './dlq-pass.js';
import { printJson, printTable } from './output.js';

interface RedriveOptions extends FilterOptions {
  readonly max?: number;
  readonly rate?: number;
  readonly dryRun?: boolean;
  readonly yes?: boolean;
  readonly json?: boolean;
}

type Redriven = Awaited<ReturnType<typeof redriveLetter>> | null;

/** Rows shown in a human summary; `--json` lists every letter. */
const SHOWN_ROWS = 50;

export function registerRedrive(dlq: Command): void {
  withFilterOptions(
    dlq
      .command('redrive')
      .description('move dead letters back to their source queue (all, or chosen ones) with their original body and group')
      .argument('<queue>', 'auth-requests | capture-requests | payout-events'),
  )
    .option('--max <n>', 'redrive at most this many letters', intOption)
    .option('--rate <letters/s>', 'redrive at most this many letters per second (e.g. 5, or 0.5)', rateOption)
    .option('--dry-run', 'show what would be moved; move nothing')
    .option('-y, --yes', 'do not ask before redriving every letter (required without a terminal when nothing is chosen)')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
The letters to redrive are fixed when the command starts: a letter put on the DLQ after that (such
as one it redrove that failed again) is never redriven by the same run, so a run always ends. Each
letter is sent to the source queue with its body unchanged, its original MessageGroupId, the
deduplication id redrive-<DLQ message id> and payfleet-redrives = its count + 1; the DLQ copy is
deleted only after that send succeeded. Without --id/--code/--since it redrives every letter, and
asks first (with the count by code) unless --yes. Progress goes to stderr; a summary is printed at
the end and on Ctrl-C. Fix the cause first (docs/operations.md): a letter whose cause is still there
comes back to the DLQ with a new message id and its redrive count.
Exit codes: 0 done, 1 a send or delete failed, interrupted or not confirmed, 3 an --id was not found.`,
    )
    .action(async (queueArg: string, opts: RedriveOptions) => {
      // The snapshot starts now: nothing put on the DLQ after this instant is this run's.
      const startedAtMs = Date.now();
      const runId = randomUUID();
      const filter = filterFrom(opts);
      const t = await target(queueArg);
      const controller = new AbortController();
      const stopListening = onInterrupt(controller);
      try {
        if (!isFiltered(filter) && !opts.dryRun && !opts.yes) {
          const chosen = await chooseLetters(
            new LetterReader(t.clients.sqs, t.urls.dlq, 60),
            filter,
            startedAtMs,
            controller.signal,
          );
          if (chosen === null) exitWith(EXIT.failure, 'interrupted; nothing redriven');
          if (chosen.length === 0) {
            if (opts.json) printJson({ queue: t.dlqName, to: t.sourceName, count: 0, redriven: [] });
            else process.stdout.write(`${t.dlqName} has no dead letters to redrive\n`);
            return;
          }
          const what = `all ${chosen.length} dead letter(s) of ${t.dlqName} (${describeCounts(countByCode(chosen.map((l) => l.view)))}) to ${t.sourceName}`;
          if (!process.stdin.isTTY)
            exitWith(
              EXIT.failure,
              `refusing to redrive ${what} without --yes: stdin is not a terminal, so nobody can confirm (or choose letters with --code, --id or --since)`,
            );
          if (!(await confirm(`Redrive ${what}? Letters whose cause is still there come back. [y/N] `)))
            exitWith(EXIT.failure, 'not confirmed; nothing redriven');
        }
        const depth = await approximateDepth(t.clients.sqs, t.urls.dlq).catch(() => undefined);
        const verb = opts.dryRun ? 'would redrive' : 'redriven';
        const progress = new ProgressLine(
          (s) =>
            `redrive: ${s.acted} ${verb}, ${s.failed} failed, ${s.skipped} skipped; ${s.received} letter(s) read` +
            `${depth !== undefined ? ` of ~${depth}` : ''}; ${(s.acted / Math.max(s.elapsedMs / 1000, 0.001)).toFixed(1)}/s`,
        );
        const outcome = await runPass<Redriven>({
          reader: new LetterReader(t.clients.sqs, t.urls.dlq, 60),
          filter,
          startedAtMs,
          runId,
          ...(opts.max !== undefined ? { max: opts.max } : {}),
          ...(opts.rate !== undefined ? { ratePerSec: opts.rate } : {}),
          signal: controller.signal,
          deletes: !opts.dryRun,
          act: opts.dryRun ? async () => null : (letter) => redriveLetter(t.clients.sqs, t.urls, letter, runId),
          onProgress: (s) => progress.update(s),
        });
        progress.end();
        report(t, runId, opts, outcome);
      } finally {
        stopListening();
        t.clients.destroy();
      }
    });
}

function report(t: Target, runId: string, opts: RedriveOptions, o: PassOutcome<Redriven>): void {
  const complete = !o.interrupted && !o.stoppedAtMax;
  const notFound = complete ? (opts.id ?? []).filter((id) => !o.foundIds.has(id)) : [];
  const views = o.done.map((d) => d.letter.view);
  const counts = countByCode(views);
  const redriven = o.done.flatMap(({ letter: { view: v }, result }) =>
    result ? [{ messageId: v.messageId, sourceMessageId: v.sourceMessageId, code: v.code, groupId: v.groupId, ...result }] : [],
  );
  const failed = o.failed.map(({ letter: { view: v }, error }) => ({
    messageId: v.messageId,
    code: v.code,
    error: `${error.name}: ${error.message}`,
    ...(error instanceof DeleteAfterSendError ? { sentAs: error.newMessageId } : {}),
  }));
  const skipped = { notChosen: o.notChosen, arrivedAfterStart: o.afterStart, ownRefailures: o.ownRefailures };
  if (opts.json) {
    printJson({
      queue: t.dlqName,
      to: t.sourceName,
      runId,
      dryRun: opts.dryRun ?? false,
      interrupted: o.interrupted,
      stoppedAtMax: o.stoppedAtMax,
      count: opts.dryRun ? 0 : redriven.length,
      byCode: Object.fromEntries(counts.map((c) => [c.code, c.count])),
      redriven,
      wouldRedrive: opts.dryRun ? views : [],
      failed,
      skipped,
      notFound,
      elapsedMs: o.elapsedMs,
    });
  } else {
    const rows = opts.dryRun
      ? views.map((v) => [v.messageId, v.sourceMessageId, v.code, short(v.groupId, 36), v.redrives, redriveDedupId(v.messageId)])
      : redriven.map((r) => [r.messageId, r.sourceMessageId, r.code, short(r.groupId, 36), r.redrives, r.newMessageId]);
    if (rows.length > 0) {
      printTable(
        [
          'message id',
          'source message id',
          'code',
          'group',
          'redrives',
          opts.dryRun ? 'would be sent with dedup id' : 'new message id',
        ],
        rows.slice(0, SHOWN_ROWS),
      );
      if (rows.length > SHOWN_ROWS) process.stdout.write(`… and ${rows.length - SHOWN_ROWS} more (--json lists every one)\n`);
      process.stdout.write('\n');
    }
    const state = o.interrupted ? 'interrupted (Ctrl-C)' : o.stoppedAtMax ? `stopped at --max ${opts.max}` : 'complete';
    const out = [
      `redrive run ${runId}: ${state} after ${(o.elapsedMs / 1000).toFixed(1)} s`,
      `${opts.dryRun ? 'dry run: would redrive' : 'redrove'} ${views.length} dead letter(s) from ${t.dlqName} to ${t.sourceName}${counts.length > 0 ? `: ${describeCounts(counts)}` : ''}`,
      `skipped ${o.notChosen + o.afterStart}: ${o.notChosen} not chosen by --id/--code/--since, ${o.afterStart} put on the DLQ after the run started` +
        ` (${o.ownRefailures} of them re-failures of letters this run redrove; a later run can redrive them)`,
      `failed ${failed.length}${failed.length > 0 ? ' (they stay in the DLQ)' : ''}`,
    ];
    process.stdout.write(`${out.join('\n')}\n`);
    for (const f of failed) process.stderr.write(`not moved: ${f.messageId}: ${f.error}\n`);
  }
  for (const id of notFound) process.stderr.write(`no dead letter ${id} in ${t.dlqName}\n`);
  if (o.interrupted) exitWith(EXIT.failure, `interrupted after ${views.length} letter(s); the rest stay in the DLQ`);
  if (failed.length > 0) exitWith(EXIT.failure, `${failed.length} letter(s) could not be redriven`);
  if (notFound.length > 0) exitWith(EXIT.notFound, `${notFound.length} id(s) not found`);
}
