/** What every `payfleet dlq` subcommand shares: resolving `<queue>`, the filter options, exit codes. */
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { AwsClients } from '../../shared/aws/clients.js';
import { parseQueueKey, QUEUES_WITH_DLQ, type QueueKey } from '../../shared/resources.js';
import { openCommandContext, resolveQueueUrl } from './context.js';
import type { HeldLetter, LetterFilter } from './dlq-letters.js';

/** Same codes as cli/main.ts EXIT (kept literal here to avoid importing the CLI entrypoint). */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

export function exitWith(code: number, message: string): never {
  throw Object.assign(new Error(message), { exitCode: code });
}

export interface Target {
  readonly key: QueueKey;
  readonly sourceName: string;
  readonly dlqName: string;
  readonly clients: AwsClients;
  readonly urls: { readonly source: string; readonly dlq: string };
}

/** Resolve `<queue>` (source or DLQ name, short or full, or URL) to its DLQ and source queue. */
export async function target(queueArg: string): Promise<Target> {
  const { aws, clients, names } = openCommandContext();
  const parsed = parseQueueKey(queueArg, aws.resourcePrefix);
  const withDlq = QUEUES_WITH_DLQ.join(', ');
  const fail = (message: string): never => {
    clients.destroy();
    exitWith(EXIT.usage, message);
  };
  if (!parsed) return fail(`unknown queue "${queueArg}"; use one of: ${withDlq} (or its -dlq name)`);
  if (!QUEUES_WITH_DLQ.includes(parsed.key)) return fail(`${parsed.key} has no dead-letter queue; use one of: ${withDlq}`);
  // A failure says which kind it is (not found, credentials, connectivity, access denied) and what to do.
  const url = async (name: string): Promise<string> => {
    try {
      return await resolveQueueUrl({ aws, clients }, name);
    } catch (err) {
      clients.destroy();
      throw err;
    }
  };
  const dlqName = names.dlq(parsed.key);
  const sourceName = names.queue(parsed.key);
  return { key: parsed.key, dlqName, sourceName, clients, urls: { dlq: await url(dlqName), source: await url(sourceName) } };
}

export function intOption(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number >= 1');
  return n;
}

export function rateOption(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 10_000)
    throw new InvalidArgumentError('must be a number of letters per second, > 0');
  return n;
}

const UNITS_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `--since`: an ISO-8601 instant, or an age such as 90s, 15m, 2h, 3d (before now). */
export function sinceOption(v: string, nowMs = Date.now()): number {
  const age = /^(\d+)([smhd])$/.exec(v.trim());
  if (age) return nowMs - Number(age[1]) * UNITS_MS[age[2]!]!;
  const t = /^\d{4}-\d{2}-\d{2}/.test(v.trim()) ? Date.parse(v.trim()) : Number.NaN;
  if (Number.isNaN(t))
    throw new InvalidArgumentError('must be an ISO-8601 time (2026-11-26T09:00:00Z) or an age (90s, 15m, 2h, 3d)');
  return t;
}

export interface FilterOptions {
  readonly id?: string[];
  readonly code?: string[];
  readonly since?: number;
}

/** Add `--id`, `--code`, `--since` to a subcommand. */
export function withFilterOptions(cmd: Command): Command {
  return cmd
    .option('--id <id...>', 'only these letters: DLQ message id, source message id (worker logs), or any earlier id')
    .option('--code <code...>', 'only letters with these error codes (e.g. UNKNOWN_PROCESSOR)')
    .addOption(
      new Option(
        '--since <time>',
        'only letters that failed at or after this time: ISO-8601, or an age (90s, 15m, 2h, 3d)',
      ).argParser((v) => sinceOption(v)),
    );
}

export function filterFrom(opts: FilterOptions): LetterFilter {
  return {
    ...(opts.id ? { ids: opts.id } : {}),
    ...(opts.code ? { codes: opts.code.map((c) => c.toUpperCase()) } : {}),
    ...(opts.since !== undefined ? { sinceMs: opts.since } : {}),
  };
}

/** A letter as one self-contained record (show --json, list --ndjson, purge --export): every attribute and the body. */
export function letterRecord(t: Target, letter: HeldLetter): Record<string, unknown> {
  return {
    queue: t.dlqName,
    ...letter.view,
    sourceQueue: letter.view.sourceQueue ?? t.sourceName,
    attributes: Object.fromEntries(
      Object.entries(letter.message.MessageAttributes ?? {}).map(([k, v]) => [k, v.StringValue ?? null]),
    ),
    body: letter.body,
  };
}

export const short = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
