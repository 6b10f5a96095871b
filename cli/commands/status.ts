/**
 * `payfleet status [--watch] [--json]`: the fleet on one screen — each queue's depth, in-flight and
 * oldest age, each DLQ's letters by error code, breaker states, and each worker's readiness — from
 * SQS and from the workers' ops endpoints (status-snapshot.ts says where each number comes from).
 * Read-only: it never receives from a source queue, and DLQ letters it reads are released at once.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { openCommandContext } from './context.js';
import { printJson, printTable } from './output.js';
import { opsTargetsFromEnv, parseOpsTargets, StatusUsageError, type OpsTarget, type WorkerStatus } from './status-ops.js';
import { type FleetStatus, loadQueueAgeReader, type QueueStatus, StatusCollector } from './status-snapshot.js';
import { pause } from '../../shared/core/timers.js';

export type { FleetStatus } from './status-snapshot.js';

function seconds(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1 || n > 3600) throw new InvalidArgumentError('must be a whole number of seconds, 1-3600');
  return n;
}

function count(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number >= 1');
  return n;
}

/** `12s`, `4m`, `3h`, `2d`; `-` when unknown. */
export function formatAge(sec: number | null | undefined): string {
  if (sec === null || sec === undefined) return '-';
  if (sec < 120) return `${sec}s`;
  if (sec < 7200) return `${Math.floor(sec / 60)}m`;
  if (sec < 172_800) return `${Math.floor(sec / 3600)}h`;
  return `${Math.floor(sec / 86_400)}d`;
}

/** A writable that keeps what printTable writes, so a frame can be drawn in one write. */
function collector(): { stream: NodeJS.WritableStream; text: () => string } {
  let buf = '';
  const write = (chunk: string) => {
    buf += chunk;
    return true;
  };
  const stream = { write } as unknown as NodeJS.WritableStream;
  return { stream, text: () => buf };
}

const codes = (byCode: Readonly<Record<string, number>>) =>
  Object.entries(byCode)
    .map(([code, n]) => `${n} ${code}`)
    .join(', ');

function workerState(w: WorkerStatus): string {
  if (!w.reachable) return `unreachable (${w.error})`;
  if (w.ready) return 'ready';
  const failing = w.failingChecks?.length ? `: ${w.failingChecks.join('; ')}` : '';
  return `${w.readiness ?? 'not ready'}${failing}`;
}

/** The human screen: queues, workers, breakers. */
export function renderStatus(s: FleetStatus): string {
  const out = collector();
  out.stream.write(`payfleet status · prefix ${s.prefix} · ${s.at}\n\n`);
  printTable(
    ['queue', 'waiting', 'in flight', 'delayed', 'oldest', 'dead letters', 'oldest letter', 'by code'],
    s.queues.map((q: QueueStatus) => [
      q.key,
      q.exists ? q.waiting : `missing (${q.error})`,
      q.inFlight,
      q.delayed,
      q.exists ? (q.oldestAgeSec === null ? 'n/a' : formatAge(q.oldestAgeSec)) : null,
      q.dlq ? (q.dlq.exists ? (q.dlq.waiting ?? 0) + (q.dlq.inFlight ?? 0) : `missing (${q.dlq.error})`) : null,
      q.dlq ? formatAge(q.dlq.oldestAgeSec) : null,
      q.dlq
        ? [codes(q.dlq.byCode), q.dlq.unlisted > 0 ? `~${q.dlq.unlisted} not read` : '', q.dlq.error && q.dlq.exists ? q.dlq.error : '']
            .filter(Boolean)
            .join(' · ')
        : null,
    ]),
    out.stream,
  );
  out.stream.write(`oldest message: ${s.oldestAge.note}\n\n`);
  if (s.workers.length === 0) {
    out.stream.write('workers: none given (--ops name=url, or PAYFLEET_OPS_URLS)\n');
  } else {
    printTable(
      ['worker', 'readiness', 'in flight', 'paused', 'parked', 'build', 'ops'],
      s.workers.map((w) => [
        w.name,
        workerState(w),
        w.inFlight,
        w.paused?.length ? w.paused.join(', ') : w.reachable ? '-' : null,
        w.parked,
        w.build ? `${w.build.version} ${w.build.commit.slice(0, 12)} node ${w.build.nodeVersion}` : null,
        w.url,
      ]),
      out.stream,
    );
  }
  if (s.breakers.length > 0) {
    out.stream.write('\n');
    printTable(
      ['dependency', 'breaker', 'by worker'],
      s.breakers.map((b) => [
        b.dependency,
        b.state,
        Object.entries(b.workers)
          .map(([w, st]) => `${w} ${st}`)
          .join(', '),
      ]),
      out.stream,
    );
  }
  return out.text();
}

/** One line per refresh when the output is not a terminal (logs, CI). */
export function statusLine(s: FleetStatus): string {
  const queues = s.queues.map((q) => {
    if (!q.exists) return `${q.key} missing`;
    const dlq = q.dlq ? ` dlq ${(q.dlq.waiting ?? 0) + (q.dlq.inFlight ?? 0)}` : '';
    return `${q.key} ${q.waiting}/${q.inFlight}${dlq}`;
  });
  const reachable = s.workers.filter((w) => w.reachable);
  const workers =
    s.workers.length === 0
      ? ''
      : ` · workers ${reachable.filter((w) => w.ready).length}/${s.workers.length} ready${
          reachable.length < s.workers.length ? `, ${s.workers.length - reachable.length} unreachable` : ''
        }`;
  const notClosed = s.breakers.filter((b) => b.state !== 'closed').map((b) => `${b.dependency} ${b.state}`);
  return `${s.at} ${queues.join(' · ')}${workers}${notClosed.length ? ` · breakers ${notClosed.join(', ')}` : ''}\n`;
}

/** The ops endpoints: `--ops` when given (each may hold several, comma-separated), else PAYFLEET_OPS_URLS. */
function targetsFrom(ops: readonly string[] | undefined): OpsTarget[] {
  if (ops && ops.length > 0) return parseOpsTargets(ops.flatMap((o) => o.split(',')), '--ops');
  return opsTargetsFromEnv(process.env.PAYFLEET_OPS_URLS);
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("the fleet on one screen: queues, DLQs by code, breakers, each worker's readiness")
    .option('--ops <name=url>', 'a worker ops endpoint (repeatable); default: PAYFLEET_OPS_URLS', (v: string, prev: string[] = []) => [...prev, v])
    .option('--json', 'print one JSON document')
    .option('--watch', 'redraw every --interval seconds until Ctrl-C (one line per refresh when not on a terminal)')
    .option('--interval <sec>', 'seconds between refreshes with --watch', seconds, 5)
    .option('--dlq-limit <n>', 'letters read per DLQ', count, 1000)
    .addHelpText(
      'after',
      `
Queues and DLQs come from SQS (PAYFLEET_RESOURCE_PREFIX); workers from their ops endpoints:
  payfleet status --ops auth=http://127.0.0.1:9401 --ops capture=http://127.0.0.1:9402
  PAYFLEET_OPS_URLS=auth=http://127.0.0.1:9401,capture=http://127.0.0.1:9402 payfleet status --watch
A worker that does not answer is shown as unreachable. The age of the oldest message is CloudWatch's
ApproximateAgeOfOldestMessage on AWS, n/a elsewhere. Details: docs/operations.md.`,
    )
    .action(async (opts: { ops?: string[]; json?: boolean; watch?: boolean; interval: number; dlqLimit: number }) => {
      if (opts.watch && opts.json) throw new StatusUsageError('--json prints one document; use it without --watch');
      const targets = targetsFrom(opts.ops);
      const ctx = openCommandContext();
      const ages = await loadQueueAgeReader(ctx.aws);
      const collector = new StatusCollector({ sqs: ctx.clients.sqs, names: ctx.names, targets, ages, dlqLimit: opts.dlqLimit });
      try {
        if (!opts.watch) {
          const s = await collector.collect();
          if (opts.json) printJson(s);
          else process.stdout.write(renderStatus(s));
          return;
        }
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        const tty = process.stdout.isTTY === true;
        try {
          while (!stop.signal.aborted) {
            const s = await collector.collect();
            if (stop.signal.aborted) break;
            // On a terminal: cursor home + clear, then the whole frame in one write (no flicker).
            if (tty) process.stdout.write(`\x1b[H\x1b[2J${renderStatus(s)}\nevery ${opts.interval}s · Ctrl-C to stop\n`);
            else process.stdout.write(statusLine(s));
            await pause(opts.interval * 1000, stop.signal);
          }
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      } finally {
        ages.reader?.close();
        ctx.clients.destroy();
      }
    });
}
