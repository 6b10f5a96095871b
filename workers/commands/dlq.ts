import { createInterface } from 'node:readline/promises';
import { DeleteMessageCommand, GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import { InvalidArgumentError, type Command } from 'commander';
import { createAwsClients } from '../../shared/aws/clients.js';
import { awsEnvSchema, toAwsConfig } from '../../shared/config/common.js';
import { parseEnv } from '../../shared/config/env.js';
import { DLQ_ATTRIBUTES } from '../../shared/core/dlq.js';
import { parseQueueKey, QUEUES_WITH_DLQ, resourceNames, type QueueKey } from '../../shared/resources.js';
import {
  approximateDepth,
  type HeldLetter,
  receiveLetters,
  redriveDedupId,
  redriveLetter,
  releaseLetters,
} from './dlq-letters.js';
import { printJson, printTable } from './output.js';

export type { DeadLetterView, HeldLetter } from './dlq-letters.js';

/** Same codes as workers/cli.ts EXIT (kept literal here to avoid importing the CLI entrypoint). */
const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

function exitWith(code: number, message: string): never {
  throw Object.assign(new Error(message), { exitCode: code });
}

interface Target {
  readonly key: QueueKey;
  readonly sourceName: string;
  readonly dlqName: string;
  readonly clients: ReturnType<typeof createAwsClients>;
  readonly urls: { source: string; dlq: string };
}

/** Resolve `<queue>` (source or DLQ name, short or full, or URL) to its DLQ and source queue. */
async function target(queueArg: string): Promise<Target> {
  const aws = toAwsConfig(parseEnv(awsEnvSchema));
  const names = resourceNames(aws.resourcePrefix);
  const parsed = parseQueueKey(queueArg, aws.resourcePrefix);
  const withDlq = QUEUES_WITH_DLQ.join(', ');
  if (!parsed) exitWith(EXIT.usage, `unknown queue "${queueArg}"; use one of: ${withDlq} (or its -dlq name)`);
  if (!QUEUES_WITH_DLQ.includes(parsed.key))
    exitWith(EXIT.usage, `${parsed.key} has no dead-letter queue; use one of: ${withDlq}`);
  const clients = createAwsClients(aws);
  const url = async (name: string) => {
    try {
      return (await clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl!;
    } catch (err) {
      clients.destroy();
      exitWith(
        EXIT.usage,
        `queue ${name} not found (${(err as Error).name}); run \`payfleet bootstrap\` against this endpoint first`,
      );
    }
  };
  const dlqName = names.dlq(parsed.key);
  const sourceName = names.queue(parsed.key);
  return { key: parsed.key, dlqName, sourceName, clients, urls: { dlq: await url(dlqName), source: await url(sourceName) } };
}

const short = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function intOption(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number >= 1');
  return n;
}

/** Letters chosen by `--id` / `--code` (all when neither is given). */
function selector(opts: { id?: string[]; code?: string[] }): (l: HeldLetter) => boolean {
  const ids = opts.id ? new Set(opts.id) : undefined;
  const codes = opts.code ? new Set(opts.code.map((c) => c.toUpperCase())) : undefined;
  return (l) => (!ids || ids.has(l.view.messageId)) && (!codes || codes.has(l.view.code));
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
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
prefix and .fifo). Listing receives each letter with a short visibility and releases it at once, so
workers and other operators are not blocked. Error codes and what to do: docs/operations.md.`,
    );

  dlq
    .command('list')
    .description('every dead letter of a queue: code, worker, attempts, failed-at, group, message id, detail')
    .argument('<queue>', 'auth-requests | capture-requests | payout-events')
    .option('--limit <n>', 'stop after this many letters', intOption, 1000)
    .option('--json', 'print JSON')
    .action(async (queueArg: string, opts: { limit: number; json?: boolean }) => {
      const t = await target(queueArg);
      try {
        const letters = await receiveLetters(t.clients.sqs, t.urls.dlq, { limit: opts.limit });
        // While we hold them, whatever else the queue counts is hidden behind a held letter of the
        // same message group (letters SQS moved itself keep their source group).
        const unlisted = Math.max(0, (await approximateDepth(t.clients.sqs, t.urls.dlq).catch(() => 0)) - letters.length);
        await releaseLetters(t.clients.sqs, t.urls.dlq, letters);
        const views = letters
          .map((l) => l.view)
          .sort((a, b) => (a.failedAt ?? a.sentAt ?? '').localeCompare(b.failedAt ?? b.sentAt ?? ''));
        const truncated = views.length >= opts.limit;
        const note =
          unlisted > 0 && !truncated
            ? `~${unlisted} more letter(s) wait behind listed letters of the same message group (or are being read by someone else); they are listed once those are redriven or purged\n`
            : '';
        if (opts.json) {
          printJson({ queue: t.dlqName, sourceQueue: t.sourceName, count: views.length, truncated, unlisted, letters: views });
          return;
        }
        if (views.length === 0) {
          process.stdout.write(`${t.dlqName} is empty\n${note}`);
          return;
        }
        printTable(
          ['message id', 'code', 'worker', 'attempts', 'failed at', 'group', 'detail'],
          views.map((v) => [
            v.messageId,
            v.code,
            v.worker,
            v.attempts,
            v.failedAt ?? v.sentAt,
            short(v.groupId, 36),
            short(v.detail, 70),
          ]),
        );
        const byCode = new Map<string, number>();
        for (const v of views) byCode.set(v.code, (byCode.get(v.code) ?? 0) + 1);
        const codes = [...byCode].map(([c, n]) => `${n} ${c}`).join(', ');
        process.stdout.write(
          `\n${views.length} dead letter(s) in ${t.dlqName}${truncated ? ` (stopped at --limit ${opts.limit})` : ''}: ${codes}\n`,
        );
        process.stdout.write(note);
        process.stdout.write(
          `show one: payfleet dlq show ${t.key} <message id>   replay: payfleet dlq redrive ${t.key} [--id <message id>]\n`,
        );
      } finally {
        t.clients.destroy();
      }
    });

  dlq
    .command('show')
    .description('one dead letter: every failure attribute and the original body, byte for byte')
    .argument('<queue>', 'auth-requests | capture-requests | payout-events')
    .argument('<messageId>', 'the DLQ message id (from `dlq list`)')
    .option('--body', 'print only the body, exactly as it was sent (no trailing newline)')
    .option('--json', 'print JSON')
    .action(async (queueArg: string, messageId: string, opts: { body?: boolean; json?: boolean }) => {
      const t = await target(queueArg);
      try {
        const letters = await receiveLetters(t.clients.sqs, t.urls.dlq, {
          limit: 100_000,
          stopWhen: (held) => held.has(messageId),
        });
        await releaseLetters(t.clients.sqs, t.urls.dlq, letters);
        const letter = letters.find((l) => l.view.messageId === messageId);
        if (!letter) exitWith(EXIT.notFound, `no dead letter ${messageId} in ${t.dlqName} (see \`payfleet dlq list ${t.key}\`)`);
        const attributes = Object.fromEntries(
          Object.entries(letter.message.MessageAttributes ?? {}).map(([k, v]) => [k, v.StringValue ?? null]),
        );
        if (opts.body) {
          process.stdout.write(letter.body);
          return;
        }
        if (opts.json) {
          printJson({
            queue: t.dlqName,
            ...letter.view,
            sourceQueue: letter.view.sourceQueue ?? t.sourceName,
            attributes,
            system: letter.message.Attributes ?? {},
            body: letter.body,
          });
          return;
        }
        const v = letter.view;
        printTable(
          ['field', 'value'],
          [
            ['message id', v.messageId],
            ['error code', v.code],
            ['detail', v.detail],
            ['worker', v.worker],
            ['attempts', v.attempts],
            ['failed at', v.failedAt],
            ['source queue', v.sourceQueue ?? t.sourceName],
            ['message group (restored by redrive)', v.groupId],
            ['on the DLQ since', v.sentAt],
            ['received from the DLQ', letter.message.Attributes?.ApproximateReceiveCount],
            ['body size', `${v.bodyBytes} bytes`],
          ],
        );
        const other = Object.entries(attributes).filter(([k]) => !(Object.values(DLQ_ATTRIBUTES) as string[]).includes(k));
        if (other.length > 0) {
          process.stdout.write('\nother message attributes:\n');
          printTable(['name', 'value'], other);
        }
        process.stdout.write(`\nbody (exactly as received; \`--body\` prints it alone):\n${letter.body}\n`);
      } finally {
        t.clients.destroy();
      }
    });

  dlq
    .command('redrive')
    .description('move dead letters back to their source queue (all, or chosen ids/codes) with their original body and group')
    .argument('<queue>', 'auth-requests | capture-requests | payout-events')
    .option('--id <messageId...>', 'only these DLQ message ids')
    .option('--code <code...>', 'only letters with these error codes (e.g. UNKNOWN_PROCESSOR)')
    .option('--dry-run', 'show what would be moved; move nothing')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      `
Each letter is sent to the source queue with its body unchanged, its original MessageGroupId and the
deduplication id redrive-<DLQ message id>, which cannot collide with the original's; the DLQ copy is
deleted only after that send succeeded. Fix the cause first (docs/operations.md): a letter whose
cause is still there comes back to the DLQ with a new message id.
Exit codes: 0 done, 1 a send or delete failed (that letter stays in the DLQ), 3 an --id was not found.`,
    )
    .action(async (queueArg: string, opts: { id?: string[]; code?: string[]; dryRun?: boolean; json?: boolean }) => {
      const t = await target(queueArg);
      const chosen = selector(opts);
      const moved: { messageId: string; code: string; groupId: string; newMessageId: string; dedupId: string }[] = [];
      const failed: { messageId: string; error: string }[] = [];
      const wouldMove: HeldLetter[] = [];
      let remaining: HeldLetter[] = [];
      try {
        remaining = await receiveLetters(t.clients.sqs, t.urls.dlq, {
          limit: 100_000,
          visibilitySec: 60,
          onBatch: async (batch) => {
            const done: HeldLetter[] = [];
            for (const letter of batch.filter(chosen)) {
              if (opts.dryRun) {
                wouldMove.push(letter);
                continue;
              }
              try {
                const r = await redriveLetter(t.clients.sqs, t.urls, letter);
                moved.push({ messageId: letter.view.messageId, code: letter.view.code, groupId: letter.view.groupId, ...r });
                done.push(letter);
              } catch (err) {
                failed.push({ messageId: letter.view.messageId, error: `${(err as Error).name}: ${(err as Error).message}` });
              }
            }
            return done;
          },
        });
      } finally {
        await releaseLetters(t.clients.sqs, t.urls.dlq, remaining);
        t.clients.destroy();
      }
      const found = new Set([
        ...moved.map((m) => m.messageId),
        ...failed.map((f) => f.messageId),
        ...wouldMove.map((l) => l.view.messageId),
      ]);
      const notFound = (opts.id ?? []).filter((id) => !found.has(id));
      if (opts.json) {
        printJson({
          queue: t.dlqName,
          to: t.sourceName,
          dryRun: opts.dryRun ?? false,
          count: moved.length,
          redriven: moved,
          wouldRedrive: wouldMove.map((l) => l.view),
          failed,
          notFound,
        });
      } else if (opts.dryRun) {
        if (wouldMove.length > 0) {
          printTable(
            ['message id', 'code', 'group', 'would be sent with dedup id'],
            wouldMove.map((l) => [l.view.messageId, l.view.code, l.view.groupId, redriveDedupId(l.view.messageId)]),
          );
        }
        process.stdout.write(`dry run: would redrive ${wouldMove.length} dead letter(s) from ${t.dlqName} to ${t.sourceName}\n`);
      } else {
        if (moved.length > 0)
          printTable(
            ['message id', 'code', 'group', 'new message id'],
            moved.map((m) => [m.messageId, m.code, m.groupId, m.newMessageId]),
          );
        for (const f of failed) process.stderr.write(`not moved: ${f.messageId}: ${f.error} (it stays in the DLQ)\n`);
        process.stdout.write(
          `${moved.length > 0 ? '\n' : ''}redrove ${moved.length} dead letter(s) from ${t.dlqName} to ${t.sourceName}\n`,
        );
      }
      for (const id of notFound) process.stderr.write(`no dead letter ${id} in ${t.dlqName}\n`);
      if (failed.length > 0) exitWith(EXIT.failure, `${failed.length} letter(s) could not be redriven`);
      if (notFound.length > 0) exitWith(EXIT.notFound, `${notFound.length} message id(s) not found`);
    });

  dlq
    .command('purge')
    .description('delete dead letters for good (all, or chosen ids/codes); asks first unless --yes')
    .argument('<queue>', 'auth-requests | capture-requests | payout-events')
    .option('--id <messageId...>', 'only these DLQ message ids')
    .option('--code <code...>', 'only letters with these error codes')
    .option('-y, --yes', 'do not ask (required when stdin is not a terminal)')
    .option('--json', 'print JSON')
    .action(async (queueArg: string, opts: { id?: string[]; code?: string[]; yes?: boolean; json?: boolean }) => {
      const t = await target(queueArg);
      try {
        if (!opts.yes) {
          if (!process.stdin.isTTY)
            exitWith(EXIT.usage, `refusing to purge ${t.dlqName} without --yes (stdin is not a terminal, so nobody can confirm)`);
          const depth = await approximateDepth(t.clients.sqs, t.urls.dlq);
          const which = opts.id || opts.code ? 'the chosen dead letters' : `all ~${depth} dead letter(s)`;
          if (!(await confirm(`Delete ${which} in ${t.dlqName}? They cannot be recovered. [y/N] `))) {
            exitWith(EXIT.failure, 'not confirmed; nothing deleted');
          }
        }
        const chosen = selector(opts);
        const deleted: string[] = [];
        const remaining = await receiveLetters(t.clients.sqs, t.urls.dlq, {
          limit: 1_000_000,
          onBatch: async (batch) => {
            const done: HeldLetter[] = [];
            for (const letter of batch.filter(chosen)) {
              await t.clients.sqs.send(
                new DeleteMessageCommand({ QueueUrl: t.urls.dlq, ReceiptHandle: letter.message.ReceiptHandle! }),
              );
              deleted.push(letter.view.messageId);
              done.push(letter);
            }
            return done;
          },
        });
        await releaseLetters(t.clients.sqs, t.urls.dlq, remaining);
        const notFound = (opts.id ?? []).filter((id) => !deleted.includes(id));
        if (opts.json) printJson({ queue: t.dlqName, deleted: deleted.length, messageIds: deleted, notFound });
        else process.stdout.write(`deleted ${deleted.length} dead letter(s) from ${t.dlqName}\n`);
        if (notFound.length > 0) exitWith(EXIT.notFound, `${notFound.length} message id(s) not found`);
      } finally {
        t.clients.destroy();
      }
    });
}
