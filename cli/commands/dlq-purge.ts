/** `payfleet dlq purge <queue>`: delete dead letters for good, after saying how many and (optionally) keeping a copy. */
import { randomUUID } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { DeleteMessageCommand } from '@aws-sdk/client-sqs';
import type { Command } from 'commander';
import {
  EXIT,
  exitWith,
  filterFrom,
  type FilterOptions,
  letterRecord,
  short,
  target,
  type Target,
  withFilterOptions,
} from './dlq-common.js';
import { countByCode, describeCounts, type HeldLetter, LetterReader, matchId } from './dlq-letters.js';
import { chooseLetters, confirm, onInterrupt, ProgressLine, runPass } from './dlq-pass.js';
import { printJson, printTable } from './output.js';

interface PurgeOptions extends FilterOptions {
  readonly yes?: boolean;
  readonly dryRun?: boolean;
  readonly export?: string;
  readonly json?: boolean;
}

export function registerPurge(dlq: Command): void {
  withFilterOptions(
    dlq
      .command('purge')
      .description('delete dead letters for good (all, or chosen ones); states the count and asks first unless --yes')
      .argument('<queue>', 'auth-requests | capture-requests | payout-events'),
  )
    .option('--dry-run', 'show what would be deleted (and --export it); delete nothing')
    .option('--export <file>', 'write every letter to this new NDJSON file (attributes and body), each before it is deleted')
    .option('-y, --yes', 'do not ask (required when stdin is not a terminal)')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
The letters to delete are fixed when the command starts (a letter put on the DLQ later is kept).
It first counts them by code, then asks on a terminal; without a terminal it refuses unless --yes.
With --export, each letter's line is written and flushed to disk before that letter is deleted.
Exit codes: 0 done, 1 not confirmed, interrupted or a delete failed, 2 bad option or the export
file exists, 3 an --id was not found.`,
    )
    .action(async (queueArg: string, opts: PurgeOptions) => {
      const startedAtMs = Date.now();
      const filter = filterFrom(opts);
      if (opts.export && existsSync(opts.export)) exitWith(EXIT.usage, `${opts.export} exists; --export writes a new file`);
      const t = await target(queueArg);
      const controller = new AbortController();
      const stopListening = onInterrupt(controller);
      let exportFd: number | undefined;
      try {
        const chosen = await chooseLetters(
          new LetterReader(t.clients.sqs, t.urls.dlq, 60),
          filter,
          startedAtMs,
          controller.signal,
        );
        if (chosen === null) exitWith(EXIT.failure, 'interrupted; nothing deleted');
        const counts = countByCode(chosen.map((l) => l.view));
        const notFound = (opts.id ?? []).filter((id) => !chosen.some((l) => matchId(l.view, id)));
        const what = `${chosen.length} dead letter(s) in ${t.dlqName}${chosen.length > 0 ? ` (${describeCounts(counts)})` : ''}`;
        if (opts.dryRun || chosen.length === 0) {
          if (opts.export) {
            exportFd = openSync(opts.export, 'wx');
            for (const l of chosen) writeSync(exportFd, `${JSON.stringify(letterRecord(t, l))}\n`);
            fsyncSync(exportFd);
          }
          dryRun(t, opts, chosen, notFound);
          return;
        }
        if (!opts.yes) {
          if (!process.stdin.isTTY)
            exitWith(EXIT.failure, `refusing to purge ${what} without --yes: stdin is not a terminal, so nobody can confirm`);
          const keep = opts.export ? '' : ' (--export <file> keeps a copy)';
          if (!(await confirm(`Delete ${what}? They cannot be recovered${keep}. [y/N] `)))
            exitWith(EXIT.failure, 'not confirmed; nothing deleted');
        }
        if (opts.export) exportFd = openSync(opts.export, 'wx');
        const fd = exportFd;
        const progress = new ProgressLine((s) => `purge: ${s.acted} of ${chosen.length} deleted, ${s.failed} failed`);
        const outcome = await runPass<string>({
          reader: new LetterReader(t.clients.sqs, t.urls.dlq, 60),
          filter,
          startedAtMs,
          runId: randomUUID(),
          signal: controller.signal,
          deletes: true,
          act: async (letter: HeldLetter) => {
            if (fd !== undefined) {
              // On disk before it is gone from the queue.
              writeSync(fd, `${JSON.stringify(letterRecord(t, letter))}\n`);
              fsyncSync(fd);
            }
            await t.clients.sqs.send(
              new DeleteMessageCommand({ QueueUrl: t.urls.dlq, ReceiptHandle: letter.message.ReceiptHandle! }),
            );
            return letter.view.messageId;
          },
          onProgress: (s) => progress.update(s),
        });
        progress.end();
        const deleted = countByCode(outcome.done.map((d) => d.letter.view));
        const failed = outcome.failed.map((f) => ({
          messageId: f.letter.view.messageId,
          error: `${f.error.name}: ${f.error.message}`,
        }));
        if (opts.json) {
          printJson({
            queue: t.dlqName,
            deleted: outcome.done.length,
            byCode: Object.fromEntries(deleted.map((c) => [c.code, c.count])),
            messageIds: outcome.done.map((d) => d.result),
            failed,
            exportedTo: opts.export ?? null,
            interrupted: outcome.interrupted,
            notFound,
          });
        } else {
          process.stdout.write(
            `deleted ${outcome.done.length} dead letter(s) from ${t.dlqName}${deleted.length > 0 ? `: ${describeCounts(deleted)}` : ''}` +
              `${opts.export ? `; each was written to ${opts.export} first` : ''}\n`,
          );
          if (outcome.afterStart > 0)
            process.stdout.write(`kept ${outcome.afterStart} letter(s) put on the DLQ after the purge started\n`);
          for (const f of failed) process.stderr.write(`not deleted: ${f.messageId}: ${f.error}\n`);
        }
        for (const id of notFound) process.stderr.write(`no dead letter ${id} in ${t.dlqName}\n`);
        if (outcome.interrupted)
          exitWith(EXIT.failure, `interrupted after deleting ${outcome.done.length} letter(s); the rest stay in the DLQ`);
        if (failed.length > 0) exitWith(EXIT.failure, `${failed.length} letter(s) could not be deleted`);
        if (notFound.length > 0) exitWith(EXIT.notFound, `${notFound.length} id(s) not found`);
      } finally {
        if (exportFd !== undefined) closeSync(exportFd);
        stopListening();
        t.clients.destroy();
      }
    });
}

function dryRun(t: Target, opts: PurgeOptions, chosen: readonly HeldLetter[], notFound: readonly string[]): void {
  const counts = countByCode(chosen.map((l) => l.view));
  if (opts.json) {
    printJson({
      queue: t.dlqName,
      dryRun: opts.dryRun ?? false,
      deleted: 0,
      wouldDelete: chosen.length,
      byCode: Object.fromEntries(counts.map((c) => [c.code, c.count])),
      letters: chosen.map((l) => l.view),
      exportedTo: opts.export ?? null,
      notFound,
    });
  } else {
    if (chosen.length > 0) {
      printTable(
        ['message id', 'source message id', 'code', 'failed at', 'detail'],
        chosen.map(({ view: v }) => [v.messageId, v.sourceMessageId, v.code, v.failedAt ?? v.sentAt, short(v.detail, 60)]),
      );
      process.stdout.write('\n');
    }
    const verb = opts.dryRun ? 'dry run: would delete' : 'nothing to delete:';
    process.stdout.write(
      `${verb} ${chosen.length} dead letter(s) from ${t.dlqName}${counts.length > 0 ? `: ${describeCounts(counts)}` : ''}` +
        `${opts.export ? `; written to ${opts.export}` : ''}\n`,
    );
  }
  for (const id of notFound) process.stderr.write(`no dead letter ${id} in ${t.dlqName}\n`);
  if (notFound.length > 0) exitWith(EXIT.notFound, `${notFound.length} id(s) not found`);
}
