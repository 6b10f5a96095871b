/**
 * `npm start` (`payfleet start`): the whole fleet on one machine, with a demo load and a closing
 * summary that checks the fleet's guarantees.
 *
 *   embedded stack (fauxqs in this process, DynamoDB Local in java) ─ bootstrap
 *   sandboxes (token service, Stripe, Worldpay, LHV) in this process, with injected faults
 *   four workers, each `payfleet worker <name>` in its own child process (as on ECS)
 *   the reference Ledger consumer draining ledger-events.fifo (what the Ledger would see)
 *   load: authorisations, captures once authorised, refunds once captured, payouts, bad messages
 *         ─ spread over --duration
 *   settle: until every message is final, every bad one dead-lettered, every event delivered
 *   summary (summary.ts) ─ SIGTERM the workers ─ stop sandboxes and emulators ─ PASS/FAIL table
 *
 * Ctrl-C at any point stops everything the same way: workers get one SIGTERM and drain within
 * their grace, the sandboxes close, fauxqs closes and DynamoDB Local's java is stopped.
 */
import { WORKER_NAMES } from '../../workers/index.js';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAwsClients, type AwsClients } from '../../shared/aws/clients.js';
import { bootstrap } from '../bootstrap.js';
import { EMBEDDED_CREDENTIALS, startEmbeddedStack, type EmbeddedStack } from '../embedded/stack.js';
import { QUEUES_WITH_DLQ, resourceNames, TABLE_KEYS, type QueueKey } from '../../shared/resources.js';
import { startSandboxServices, type SandboxServices } from '../sandbox/serve.js';
import { receiveLetters, releaseLetters, type DeadLetterView } from '../commands/dlq-letters.js';
import { LoadDriver } from './driver.js';
import { dynamoDbLocalLeft, faultsInjected, judge, scanAll } from './evidence.js';
import { startWorker, stopWorkers, waitUntilReady, type DemoWorker, type DemoWorkerName } from './fleet.js';
import { LiveScreen, renderLine, renderScreen, type Snapshot } from './live-view.js';
import { planDemo } from './load.js';
import { FleetMonitor, LedgerView, type MonitorState } from './monitor.js';
import { DEMO_FAULTS, FORCE_EXIT_MS, loadLedgerConsumer, MAX_RECEIVE_COUNT, PREFIX, SHARDS, workerEnv } from './setup.js';
import { renderSummary } from './summary.js';
import { sleep } from '../../shared/core/timers.js';

export interface DemoOptions {
  /** Good authorisation requests. @default 120 */
  readonly charges: number;
  /** Payout events (0 without the payout worker). @default 60 */
  readonly payouts: number;
  /** Seconds over which the load is sent. @default 30 */
  readonly durationSec: number;
  /** Longest wait, after the load is sent, for everything to become final. @default 75 */
  readonly settleTimeoutSec: number;
  /** Inject sandbox faults (5xx, timeouts after success). @default true */
  readonly faults: boolean;
  /** Plain progress lines even on a terminal. */
  readonly plain: boolean;
  /** Print the summary as JSON on stdout (progress goes to stderr). */
  readonly json: boolean;
}

class Interrupted extends Error {
  constructor(signal: string) {
    super(`interrupted by ${signal}`);
    this.name = 'Interrupted';
  }
}

/** Run the demo; resolves with the process exit code (0 only when every check passed). */
export async function runDemo(o: DemoOptions): Promise<number> {
  const startedAt = Date.now();
  const elapsed = () => (Date.now() - startedAt) / 1000;
  const tty = !o.plain && !o.json && process.stdout.isTTY === true;
  const info = o.json ? process.stderr : process.stdout;
  const say = (line: string) => info.write(`${line}\n`);
  const abort = new AbortController();
  let firstSignalAt: number | undefined;
  let stack: EmbeddedStack | undefined;
  let sandboxes: SandboxServices | undefined;
  let clients: AwsClients | undefined;
  let workers: DemoWorker[] = [];
  let screen: LiveScreen | undefined;
  let phase = 'starting';
  // Ends the Ledger consumer and live-view loops (also on Ctrl-C, before the workers are stopped).
  let loopsStopped = false;

  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === undefined) {
      firstSignalAt = Date.now();
      abort.abort(new Interrupted(signal));
      return;
    }
    // npm relays the terminal's Ctrl-C to us as well: one press, two signals. Force only on a real second press.
    if (Date.now() - firstSignalAt < 1500) return;
    screen?.close();
    say('\nforced stop: killing the workers and the emulators');
    for (const w of workers) w.kill();
    void Promise.allSettled([sandboxes?.close(), stack?.stop()]).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // The terminal went away (window closed): stop the same way, and let writes to it fail quietly.
  process.on('SIGHUP', onSignal);
  const ignoreWriteErrors = () => undefined;
  process.stdout.on('error', ignoreWriteErrors);
  process.stderr.on('error', ignoreWriteErrors);

  const step = (text: string, label = text) => {
    phase = label;
    if (!screen) say(`[${String(Math.round(elapsed())).padStart(4)}s] ${text}`);
  };

  try {
    step('starting the embedded SQS (fauxqs) and DynamoDB Local');
    stack = await startEmbeddedStack();
    if (abort.signal.aborted) throw abort.signal.reason;
    say(`       embedded stack: SQS ${stack.sqsEndpoint} · DynamoDB ${stack.dynamodbEndpoint}`);
    const names = resourceNames(PREFIX);
    clients = createAwsClients(
      { region: stack.region, sqsEndpoint: stack.sqsEndpoint, dynamodbEndpoint: stack.dynamodbEndpoint, resourcePrefix: PREFIX },
      { credentials: EMBEDDED_CREDENTIALS, maxSockets: 64 },
    );
    const sqs = clients.sqs;
    const boot = await bootstrap(clients, {
      prefix: PREFIX,
      maxReceiveCount: MAX_RECEIVE_COUNT,
      payoutShards: SHARDS,
      ledgerShards: SHARDS,
    });
    const urls = new Map(Object.entries(boot.queueUrls));
    const url = (name: string) => urls.get(name)!;

    step('starting the sandbox token service, Stripe, Worldpay and LHV');
    sandboxes = await startSandboxServices({
      ...(o.faults ? { faults: DEMO_FAULTS } : {}),
      lhv: { responseDelayMs: 200, followUpDelayMs: 1500 },
    });
    const payoutsOn = o.payouts > 0;
    const plan = planDemo({ charges: o.charges, payouts: payoutsOn ? o.payouts : 0 });
    const cardOf = (number: string) => ({
      number,
      exp_month: 12,
      exp_year: 2030,
      cvc: '123',
      cardholder_name: 'Demo Cardholder',
    });
    for (const c of plan.charges) sandboxes.tokens.register(c.token, cardOf(c.card));
    for (const b of plan.bad)
      if (b.token) sandboxes.tokens.register(b.token.id, b.token.card === 'expired' ? 'expired' : cardOf(b.token.card));

    const logDir = await mkdtemp(join(tmpdir(), 'payfleet-demo-'));
    const names4: DemoWorkerName[] = WORKER_NAMES.filter((n) => payoutsOn || n !== 'payout');
    step(`starting ${names4.length} workers as child processes (payfleet worker ${names4.join(' | ')}); logs in ${logDir}`);
    const sb = sandboxes;
    const st = stack;
    workers = await Promise.all(names4.map((n) => startWorker(n, workerEnv(n, st, sb), logDir)));
    await Promise.race([
      waitUntilReady(workers, 120_000),
      new Promise<never>((_, reject) =>
        abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true }),
      ),
    ]);
    step(`all workers ready after ${Math.round(elapsed())} s`);

    const consumer = await loadLedgerConsumer(sqs, url(names.queue('ledger-events')));
    const ledgerView = new LedgerView();
    const queues: QueueKey[] = payoutsOn
      ? ['auth-requests', 'capture-requests', 'refund-requests', 'payout-events', 'ledger-events']
      : ['auth-requests', 'capture-requests', 'refund-requests', 'ledger-events'];
    const monitor = new FleetMonitor(sqs, names, urls, workers, queues);
    // The Ledger: drain ledger-events.fifo continuously, as the downstream consumer would.
    const consumerLoop = (async () => {
      while (!loopsStopped) {
        try {
          await consumer.pollOnce(1);
          ledgerView.update(consumer.events());
        } catch {
          await sleep(200);
        }
      }
    })();

    const driver = new LoadDriver(plan, o.durationSec * 1000, sqs, (q) => url(names.queue(q)));
    let latest: MonitorState = { queues: [], workers: [], dlqDepth: new Map() };
    const snapshot = (): Snapshot => ({
      elapsedSec: elapsed(),
      phase,
      logDir,
      queues: latest.queues,
      workers: latest.workers,
      sent: {
        auth: driver.sent.auth,
        authTotal: driver.totals.auth,
        captures: driver.sent.captures,
        capturesTotal: driver.totals.captures,
        refunds: driver.sent.refunds,
        refundsTotal: driver.totals.refunds,
        payouts: driver.sent.payouts,
        payoutsTotal: driver.totals.payouts,
        bad: driver.sent.bad,
        badTotal: driver.totals.bad,
      },
      charges: ledgerView.counts('payment'),
      refunds: ledgerView.counts('refund'),
      payouts: ledgerView.counts('payout'),
      ledger: (() => {
        const r = consumer.report();
        return { received: r.received, unique: r.unique, duplicates: r.duplicates.length, resources: r.resources };
      })(),
    });
    if (tty) screen = new LiveScreen();
    let lastLine = 0;
    const monitorLoop = (async () => {
      while (!loopsStopped) {
        try {
          latest = await monitor.sample();
          if (screen) screen.draw(renderScreen(snapshot(), process.stdout.columns || 120));
          else if (Date.now() - lastLine >= 5000) {
            lastLine = Date.now();
            say(renderLine(snapshot()));
          }
        } catch {
          // A scrape failed (a worker restarting); the next sample tells.
        }
        await sleep(1000);
      }
    })();

    // ---- load, then settle
    step(`sending the load over ${o.durationSec} s`, 'sending load');
    driver.start();
    const loadStart = Date.now();
    const expectedDlq = new Map<QueueKey, number>();
    for (const b of plan.bad) expectedDlq.set(b.queue, (expectedDlq.get(b.queue) ?? 0) + 1);
    for (const r of plan.refunds)
      if ('dlq' in r.expect) expectedDlq.set('refund-requests', (expectedDlq.get('refund-requests') ?? 0) + 1);
    const allFinal = () =>
      plan.charges.every((c) => c.expect.includes(ledgerView.status(c.chargeId) as never)) &&
      plan.bad.every((b) => !b.charge || ledgerView.status(b.charge.chargeId) === b.charge.expect) &&
      plan.payouts.every((p) => ledgerView.status(p.paymentId) === p.expect) &&
      plan.refunds.every((r) => !('status' in r.expect) || ledgerView.status(r.refundId) === r.expect.status) &&
      [...expectedDlq].every(([q, n]) => (latest.dlqDepth.get(q) ?? 0) >= n);
    const loadDeadline = loadStart + o.durationSec * 1000;
    const settleDeadline = loadDeadline + o.settleTimeoutSec * 1000;
    let settledPhase = false;
    let timedOut = false;
    let lastOutboxCheck = 0;
    for (;;) {
      await driver.pump((id) => ledgerView.status(id));
      const allSent = driver.allSent;
      if (allSent && !settledPhase) {
        settledPhase = true;
        step('load sent; waiting for every message to reach its final state', 'load sent, settling');
      }
      if (allSent && allFinal() && Date.now() - lastOutboxCheck > 1000) {
        lastOutboxCheck = Date.now();
        // Caught up when the Ledger has every event the outbox holds.
        const outboxRows = (await scanAll(clients.doc, names.table('events'))).length;
        if (consumer.uniqueCount >= outboxRows) break;
      }
      if (!settledPhase) phase = `sending load ${Math.min(99, Math.floor(driver.progress * 100))}%`;
      if (Date.now() > settleDeadline) {
        timedOut = true;
        step(`stopped waiting after --settle-timeout ${o.settleTimeoutSec} s`);
        break;
      }
      await sleep(200, abort.signal);
    }

    // ---- judge
    step('checking the invariants', 'checking');
    const doc = clients.doc;
    const tables = new Map<string, Record<string, unknown>[]>();
    for (const t of TABLE_KEYS) tables.set(t, await scanAll(doc, names.table(t)));
    const dlq = new Map<string, { view: DeadLetterView; body: string }[]>();
    await Promise.all(
      QUEUES_WITH_DLQ.map(async (q) => {
        const letters = await receiveLetters(sqs, url(names.dlq(q)));
        await releaseLetters(sqs, url(names.dlq(q)), letters);
        dlq.set(
          q,
          letters.map((l) => ({ view: l.view, body: l.body, attributes: l.message.MessageAttributes })),
        );
      }),
    );
    await consumer.drain(500);
    ledgerView.update(consumer.events());
    loopsStopped = true;
    await Promise.all([consumerLoop, monitorLoop]);
    screen?.close();
    screen = undefined;

    step('stopping the workers (SIGTERM; each drains within its grace period)', 'stopping');
    await stopWorkers(workers, FORCE_EXIT_MS + 3000);
    const exits = await Promise.all(workers.map(async (w) => ({ name: w.name, ...(await w.exited) })));
    const logs = new Map<string, string>();
    for (const w of workers) logs.set(`${w.name} log`, await readFile(w.logFile, 'utf8').catch(() => ''));

    const checks = judge({ plan, tables, dlq, consumer, sandboxes, logs, payoutsOn });
    checks.push({
      name: 'workers stopped cleanly on SIGTERM',
      ok: exits.every((e) => e.code === 0 && (e.afterTermMs ?? 0) <= FORCE_EXIT_MS),
      detail: exits.map((e) => `${e.name} exit ${e.code} after ${((e.afterTermMs ?? 0) / 1000).toFixed(1)} s`).join(', '),
    });

    const faults = faultsInjected(sandboxes);
    const resent = driver.resent;
    step('stopping the sandboxes and the emulators');
    await sandboxes.close();
    clients.destroy();
    clients = undefined;
    const dynamodbPort = new URL(stack.dynamodbEndpoint).port;
    await stack.stop();
    stack = undefined;
    const left = await dynamoDbLocalLeft(dynamodbPort);
    checks.push({
      name: 'emulators stopped (no DynamoDB Local left)',
      ok: left.length === 0,
      detail:
        left.length === 0
          ? `fauxqs closed; DynamoDB Local on port ${dynamodbPort} stopped`
          : `still running: pids ${left.join(', ')}`,
    });

    const ok = checks.every((c) => c.ok);
    const took = Math.round(elapsed());
    if (o.json) {
      process.stdout.write(
        `${JSON.stringify({
          ok,
          // The orchestrator's Node; every worker is started with the same executable (process.execPath).
          node: process.version,
          elapsedSec: took,
          timedOut,
          logDir,
          load: {
            charges: plan.charges.length,
            refunds: plan.refunds.length,
            payouts: plan.payouts.length,
            bad: plan.bad.length,
            resent,
          },
          faultsInjected: faults.counts,
          checks,
        })}\n`,
      );
    } else {
      say('');
      say(
        `payfleet demo summary (${plan.charges.length} charges, ${plan.refunds.length} refunds, ${plan.payouts.length} payouts, ${plan.bad.length} bad messages; ${took} s; Node ${process.version}; logs in ${logDir})`,
      );
      say(`  injected faults: ${faults.text}`);
      say(
        `  re-sent with a fresh deduplication id (must act once): authorisations ×${resent.auth}, captures ×${resent.captures}, refunds ×${resent.refunds}, payouts ×${resent.payouts}`,
      );
      say('');
      say(renderSummary(checks, tty ? process.stdout.columns || 160 : Number.POSITIVE_INFINITY));
      say('');
      say(
        ok
          ? 'Next: `npx payfleet --help`, docs/operations.md (DLQs, metrics, configuration), docs/design.md.'
          : `Something did not hold. Worker logs: ${logDir}. Please report it with the summary above.`,
      );
    }
    return ok ? 0 : 1;
  } catch (err) {
    loopsStopped = true;
    screen?.close();
    screen = undefined;
    if (err instanceof Interrupted) {
      say(`\n${err.message}: stopping the workers, sandboxes and emulators...`);
    } else {
      say(`\npayfleet start failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    return err instanceof Interrupted ? 130 : 1;
  } finally {
    loopsStopped = true;
    screen?.close();
    if (workers.some((w) => w.child.exitCode === null && w.child.signalCode === null)) {
      await stopWorkers(workers, FORCE_EXIT_MS + 3000);
      const exits = await Promise.all(workers.map(async (w) => `${w.name} ${(await w.exited).code}`));
      say(`workers stopped (exit codes: ${exits.join(', ')})`);
    }
    await sandboxes?.close();
    clients?.destroy();
    if (stack) {
      await stack.stop();
      say('emulators stopped');
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}
