import { readFile } from 'node:fs/promises';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Command } from 'commander';
import { parseQueueKey, QUEUE_KEYS, type QueueKey } from '../../shared/resources.js';
import { printJson, printTable } from './output.js';

/** Same codes as cli/main.ts EXIT (kept literal here to avoid importing the CLI entrypoint). */
const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

function exitWith(code: number, message: string): never {
  throw Object.assign(new Error(message), { exitCode: code });
}

/** Which body fields become MessageGroupId and MessageDeduplicationId, per queue (docs/contract.md §1). */
export const MESSAGE_ID_FIELDS: Readonly<Record<QueueKey, { readonly group: string; readonly dedup: string }>> = {
  'auth-requests': { group: 'chargeId', dedup: 'authRequestId' },
  'capture-requests': { group: 'chargeId', dedup: 'captureRequestId' },
  'refund-requests': { group: 'chargeId', dedup: 'refundRequestId' },
  'payout-events': { group: 'paymentId', dedup: 'eventId' },
  'ledger-events': { group: 'resource_external_id', dedup: 'event_id' },
};

/** SQS: 1-128 characters, letters, digits and ASCII punctuation. */
const SQS_ID = /^[\x21-\x7e]{1,128}$/;

export type DerivedIds =
  | { readonly ok: true; readonly groupId: string; readonly dedupId: string; readonly snsWrapped: boolean }
  | { readonly ok: false; readonly problem: string };

/**
 * MessageGroupId and MessageDeduplicationId of `body` on `queue`, as docs/contract.md §1 derives them.
 * A payout event may arrive wrapped in an SNS notification; its ids are read from the inner event.
 * Problems name the field, never its value (bodies can hold anything).
 */
export function deriveMessageIds(queue: QueueKey, body: string): DerivedIds {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    return { ok: false, problem: `not JSON (${(err as Error).message})` };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, problem: 'not a JSON object' };
  let fields = json as Record<string, unknown>;
  let snsWrapped = false;
  if (queue === 'payout-events' && 'Type' in fields) {
    if (fields.Type !== 'Notification' || typeof fields.Message !== 'string') {
      return { ok: false, problem: 'an SNS envelope must be {"Type":"Notification","Message":"<event JSON>"}' };
    }
    try {
      const inner: unknown = JSON.parse(fields.Message);
      if (typeof inner !== 'object' || inner === null || Array.isArray(inner))
        return { ok: false, problem: 'SNS Message is not a JSON object' };
      fields = inner as Record<string, unknown>;
      snsWrapped = true;
    } catch {
      return { ok: false, problem: 'SNS Message is not JSON' };
    }
  }
  const { group, dedup } = MESSAGE_ID_FIELDS[queue];
  const where = snsWrapped ? 'SNS Message.' : '';
  const pick = (name: string, role: string): string | { problem: string } => {
    const v = fields[name];
    if (v === undefined || v === null || v === '') return { problem: `missing ${where}${name} (the ${role})` };
    if (typeof v !== 'string') return { problem: `${where}${name} must be a string (it is the ${role})` };
    if (!SQS_ID.test(v))
      return { problem: `${where}${name} cannot be a ${role}: SQS allows 1-128 letters, digits and punctuation` };
    return v;
  };
  const groupId = pick(group, 'MessageGroupId');
  if (typeof groupId !== 'string') return { ok: false, ...groupId };
  const dedupId = pick(dedup, 'MessageDeduplicationId');
  if (typeof dedupId !== 'string') return { ok: false, ...dedupId };
  return { ok: true, groupId, dedupId, snsWrapped };
}

/**
 * The worker's own parser for a queue's bodies (`--validate`); ledger-events has none here.
 * Loaded on use: the schemas pull in zod, which `payfleet --help` must not pay for.
 */
export async function loadValidator(queue: QueueKey): Promise<((body: string) => unknown) | undefined> {
  switch (queue) {
    case 'auth-requests':
      return (await import('../../workers/auth/schema.js')).parseAuthorisationRequested;
    case 'capture-requests':
      return (await import('../../workers/capture/schema.js')).parseCaptureRequested;
    case 'payout-events':
      return (await import('../../workers/payout/schema.js')).parseCheckoutApprovalAccepted;
    default:
      return undefined;
  }
}

export interface ParsedLine {
  readonly line: number;
  readonly body: string;
  readonly groupId: string;
  readonly dedupId: string;
}

/** Split NDJSON into sendable lines and per-line problems. Blank lines are skipped; bodies are kept byte for byte. */
export function parseNdjson(
  queue: QueueKey,
  text: string,
  options: { validate?: (body: string) => unknown } = {},
): { messages: ParsedLine[]; invalid: { line: number; problem: string }[] } {
  const messages: ParsedLine[] = [];
  const invalid: { line: number; problem: string }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const body = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    if (body.trim() === '') continue;
    const ids = deriveMessageIds(queue, body);
    if (!ids.ok) {
      invalid.push({ line: i + 1, problem: ids.problem });
      continue;
    }
    const parser = options.validate;
    if (parser) {
      try {
        parser(body);
      } catch (err) {
        invalid.push({ line: i + 1, problem: `the ${queue} worker would dead-letter it: ${(err as Error).message}` });
        continue;
      }
    }
    messages.push({ line: i + 1, body, groupId: ids.groupId, dedupId: ids.dedupId });
  }
  return { messages, invalid };
}

/** Send in order, 10 per SendMessageBatch. Returns SQS message ids, or the entries SQS refused. */
export async function sendInOrder(
  sqs: SQSClient,
  queueUrl: string,
  messages: readonly ParsedLine[],
): Promise<{ sent: { line: number; messageId: string }[]; failed: { line: number; problem: string }[] }> {
  const { SendMessageBatchCommand } = await import('@aws-sdk/client-sqs');
  const sent: { line: number; messageId: string }[] = [];
  const failed: { line: number; problem: string }[] = [];
  for (let i = 0; i < messages.length; i += 10) {
    const chunk = messages.slice(i, i + 10);
    const out = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: chunk.map((m, j) => ({
          Id: String(j),
          MessageBody: m.body,
          MessageGroupId: m.groupId,
          MessageDeduplicationId: m.dedupId,
        })),
      }),
    );
    for (const ok of out.Successful ?? []) sent.push({ line: chunk[Number(ok.Id)]!.line, messageId: ok.MessageId ?? '' });
    for (const f of out.Failed ?? [])
      failed.push({ line: chunk[Number(f.Id)]!.line, problem: `${f.Code ?? 'error'}: ${f.Message ?? ''}`.trim() });
  }
  sent.sort((a, b) => a.line - b.line);
  return { sent, failed };
}

async function readInput(source: string | undefined): Promise<{ name: string; text: string }> {
  if (source === undefined || source === '-') {
    if (process.stdin.isTTY) process.stderr.write('reading NDJSON from the terminal: one message per line, Ctrl-D to finish\n');
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return { name: 'stdin', text: Buffer.concat(chunks).toString('utf8') };
  }
  try {
    return { name: source, text: await readFile(source, 'utf8') };
  } catch (err) {
    exitWith(EXIT.usage, `cannot read ${source}: ${(err as Error).message}`);
  }
}

/** Resolve a queue argument (short name, full name, or URL) to a queue that accepts `send`. */
export function resolveQueueArg(input: string, prefix: string): QueueKey {
  const parsed = parseQueueKey(input, prefix);
  if (!parsed)
    exitWith(
      EXIT.usage,
      `unknown queue "${input}"; use one of: ${QUEUE_KEYS.join(', ')} (with or without the prefix "${prefix}" and ".fifo")`,
    );
  if (parsed.dlq)
    exitWith(
      EXIT.usage,
      `"${input}" is a dead-letter queue; to move dead letters back use \`payfleet dlq redrive ${parsed.key}\``,
    );
  return parsed.key;
}

interface SendOptions {
  validate?: boolean;
  skipInvalid?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** `payfleet send <queue> [file.ndjson|-]`: enqueue messages as an upstream system would. */
export function registerSend(program: Command): void {
  program
    .command('send')
    .description(
      'enqueue NDJSON messages (one body per line) with MessageGroupId and MessageDeduplicationId derived from each body',
    )
    .argument('<queue>', `${QUEUE_KEYS.join(' | ')} (short name, full name or URL)`)
    .argument('[file]', 'NDJSON file; "-" or nothing reads stdin')
    .option('--validate', "also check each body with the worker's own schema and refuse lines it would dead-letter")
    .option('--skip-invalid', 'send the valid lines even when others are invalid (default: send nothing if any line is invalid)')
    .option('--dry-run', 'check the lines and show the derived ids; send nothing')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
Ids per queue (docs/contract.md §1):
  auth-requests     MessageGroupId = chargeId    MessageDeduplicationId = authRequestId
  capture-requests  MessageGroupId = chargeId    MessageDeduplicationId = captureRequestId
  payout-events     MessageGroupId = paymentId   MessageDeduplicationId = eventId  (raw or SNS-wrapped)
  ledger-events     MessageGroupId = resource_external_id   MessageDeduplicationId = event_id

Each line is sent byte for byte, in file order. SQS drops a repeated deduplication id for five
minutes, so sending the same file twice within that window enqueues each message once.
Exit codes: 0 all sent, 1 a line was invalid or refused, 2 bad queue name, file or configuration.`,
    )
    .action(async (queueArg: string, file: string | undefined, opts: SendOptions) => {
      // Loaded here, not at CLI start: `payfleet --help` must not pay for the AWS SDK and zod.
      const [{ awsEnvSchema, toAwsConfig }, { parseEnv }, { openCommandContext, resolveQueueUrl }] = await Promise.all([
        import('../../shared/config/common.js'),
        import('../../shared/config/env.js'),
        import('./context.js'),
      ]);
      const aws = toAwsConfig(parseEnv(awsEnvSchema));
      const queue = resolveQueueArg(queueArg, aws.resourcePrefix);
      const queueName = `${aws.resourcePrefix}${queue}.fifo`;
      const input = await readInput(file);
      const validator = opts.validate ? await loadValidator(queue) : undefined;
      const { messages, invalid } = parseNdjson(queue, input.text, validator ? { validate: validator } : {});
      const report = (
        sent: { line: number; messageId: string }[],
        refused: { line: number; problem: string }[],
        note: string,
      ) => {
        if (opts.json) {
          printJson({
            queue: queueName,
            input: input.name,
            dryRun: opts.dryRun ?? false,
            valid: messages.length,
            sent: sent.length,
            invalid,
            refused,
            messages: messages.map((m) => ({
              line: m.line,
              groupId: m.groupId,
              dedupId: m.dedupId,
              messageId: sent.find((s) => s.line === m.line)?.messageId ?? null,
            })),
          });
          return;
        }
        for (const p of invalid) process.stderr.write(`line ${p.line}: ${p.problem}\n`);
        for (const p of refused) process.stderr.write(`line ${p.line}: SQS refused it: ${p.problem}\n`);
        if (opts.dryRun && messages.length > 0) {
          printTable(
            ['line', 'MessageGroupId', 'MessageDeduplicationId'],
            messages.map((m) => [m.line, m.groupId, m.dedupId]),
          );
          process.stdout.write('\n');
        }
        process.stdout.write(`${note}\n`);
      };

      if (messages.length === 0 && invalid.length === 0) {
        report([], [], `no messages in ${input.name}: nothing sent`);
        exitWith(EXIT.failure, `no messages in ${input.name}`);
      }
      if (opts.dryRun) {
        report([], [], `dry run: ${messages.length} valid, ${invalid.length} invalid; nothing sent to ${queueName}`);
        if (invalid.length > 0) exitWith(EXIT.failure, `${invalid.length} invalid line(s)`);
        return;
      }
      if (invalid.length > 0 && !opts.skipInvalid) {
        report(
          [],
          [],
          `${invalid.length} invalid line(s): nothing sent to ${queueName} (fix them, or pass --skip-invalid to send the ${messages.length} valid ones)`,
        );
        exitWith(EXIT.failure, `${invalid.length} invalid line(s); nothing sent`);
      }
      const ctx = openCommandContext(aws);
      const { clients } = ctx;
      try {
        // A missing queue, bad credentials, an unreachable endpoint and a refused permission each
        // get their own message and exit code (context.ts); "run bootstrap" only for a new environment.
        const queueUrl = await resolveQueueUrl(ctx, queueName);
        const { sent, failed } = await sendInOrder(clients.sqs, queueUrl, messages);
        const groups = new Set(messages.filter((m) => sent.some((s) => s.line === m.line)).map((m) => m.groupId)).size;
        const skipped = invalid.length > 0 ? `; ${invalid.length} invalid line(s) skipped` : '';
        const refused = failed.length > 0 ? `; ${failed.length} refused by SQS` : '';
        report(sent, failed, `sent ${sent.length} message(s) in ${groups} message group(s) to ${queueName}${skipped}${refused}`);
        if (invalid.length > 0 || failed.length > 0) exitWith(EXIT.failure, `${invalid.length + failed.length} line(s) not sent`);
      } finally {
        clients.destroy();
      }
    });
}
