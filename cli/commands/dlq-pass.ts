/**
 * One acting pass over a DLQ (redrive, purge): the snapshot rule, `--max`, `--rate`, progress, and
 * Ctrl-C. The commands decide what to do with a letter; this decides which letters, how fast, and
 * when to stop.
 */
import { createInterface } from 'node:readline/promises';
import {
  type DeadLetterView,
  type HeldLetter,
  type LetterFilter,
  type LetterReader,
  matchId,
  matchesFilter,
} from './dlq-letters.js';
import { sleep } from '../../shared/core/timers.js';

/**
 * Whether a letter belongs to a run that started at `startedAtMs`:
 *
 *   run start ──────────────────────────────────────────────────────▶ run end
 *   │ snapshot: on the DLQ before the start (SentTimestamp <= start)
 *   │           ── redrive d1 ─▶ worker fails it again ─▶ d2 (lineage run = this run): own-refailure
 *   │           ── an unrelated message fails ─▶ d3 (SentTimestamp > start): after-start
 *
 * d2 and d3 are never acted on by this run; a later run can. The run id catches a run's own
 * re-failures whatever the clocks say; SentTimestamp (the queue's clock, compared with ours)
 * catches the rest, give or take the skew between the two clocks.
 */
export function snapshotStatus(
  v: DeadLetterView,
  startedAtMs: number,
  runId: string,
): 'snapshot' | 'own-refailure' | 'after-start' {
  if (v.redriveRun === runId) return 'own-refailure';
  const sent = v.sentAt === null ? Number.NaN : Date.parse(v.sentAt);
  return sent > startedAtMs ? 'after-start' : 'snapshot';
}

export interface PassOptions<R> {
  readonly reader: LetterReader;
  readonly filter: LetterFilter;
  readonly startedAtMs: number;
  readonly runId: string;
  /** Act on at most this many letters. */
  readonly max?: number;
  /** Act on at most this many letters per second. */
  readonly ratePerSec?: number;
  /** Aborted by Ctrl-C: the letter in hand is finished, nothing more is started. */
  readonly signal: AbortSignal;
  /** Act on one letter; resolves once it is done (and, if `deletes`, gone from the DLQ); throws if not. */
  readonly act: (letter: HeldLetter) => Promise<R>;
  /** True when a successful `act` removed the letter from the DLQ (redrive, purge; not a dry run). */
  readonly deletes: boolean;
  readonly onProgress?: (stats: PassStats) => void;
}

export interface PassStats {
  readonly acted: number;
  readonly failed: number;
  readonly skipped: number;
  /** Distinct letters received so far. */
  readonly received: number;
  readonly elapsedMs: number;
}

export interface PassOutcome<R> {
  readonly done: readonly { readonly letter: HeldLetter; readonly result: R }[];
  readonly failed: readonly { readonly letter: HeldLetter; readonly error: Error }[];
  /** Snapshot letters that `--id` / `--code` / `--since` did not choose. */
  readonly notChosen: number;
  /** Letters put on the DLQ after the start (own re-failures included). */
  readonly afterStart: number;
  /** Of those, re-failures of letters this very run redrove. */
  readonly ownRefailures: number;
  readonly stoppedAtMax: boolean;
  readonly interrupted: boolean;
  /** `--id` values that named a letter of the snapshot. */
  readonly foundIds: ReadonlySet<string>;
  readonly elapsedMs: number;
}

/**
 * Walk the DLQ once and act on every snapshot letter the filter chooses, at most once each.
 * The pass ends when the DLQ has no snapshot letter left to hand out (see {@link LetterReader}),
 * at `max`, or at Ctrl-C; whatever it still holds is given back before it returns.
 */
export async function runPass<R>(o: PassOptions<R>): Promise<PassOutcome<R>> {
  const started = Date.now();
  const done: { letter: HeldLetter; result: R }[] = [];
  const failed: { letter: HeldLetter; error: Error }[] = [];
  const foundIds = new Set<string>();
  let notChosen = 0;
  let afterStart = 0;
  let ownRefailures = 0;
  const pacer = new Pacer(o.ratePerSec);
  const acted = () => done.length + failed.length;
  const atMax = () => o.max !== undefined && acted() >= o.max;
  const inSnapshot = (l: HeldLetter) => snapshotStatus(l.view, o.startedAtMs, o.runId) === 'snapshot';
  const stats = (): PassStats => ({
    acted: done.length,
    failed: failed.length,
    skipped: notChosen + afterStart,
    received: o.reader.received,
    elapsedMs: Date.now() - started,
  });
  try {
    // With --id, stop once every id has named a letter (no need to read a large DLQ to its end).
    const allFound = () => o.filter.ids?.every((id) => foundIds.has(id)) === true;
    while (!o.signal.aborted && !atMax() && !allFound()) {
      // Receive little more than the rate lets us act on soon, so nothing waits long while held.
      const paced = o.ratePerSec ? Math.max(1, Math.floor(o.ratePerSec)) : 10;
      const want = Math.min(10, paced, o.max !== undefined ? o.max - acted() : 10);
      const batch = await o.reader.next(want, inSnapshot);
      if (batch === null) break;
      for (const letter of batch) {
        const status = snapshotStatus(letter.view, o.startedAtMs, o.runId);
        if (status !== 'snapshot') {
          // Held (so it is not received again) and given back at the end: never this run's to act on.
          afterStart++;
          if (status === 'own-refailure') ownRefailures++;
          continue;
        }
        if (!matchesFilter(o.filter, letter.view)) {
          notChosen++;
          continue;
        }
        if (atMax() || !(await pacer.wait(o.signal, () => o.reader.keepAlive()))) break;
        for (const id of o.filter.ids ?? []) if (matchId(letter.view, id)) foundIds.add(id);
        try {
          done.push({ letter, result: await o.act(letter) });
          if (o.deletes) o.reader.forget(letter);
        } catch (err) {
          failed.push({ letter, error: err instanceof Error ? err : new Error(String(err)) });
        }
        o.onProgress?.(stats());
      }
    }
  } finally {
    await o.reader.releaseAll();
  }
  return {
    done,
    failed,
    notChosen,
    afterStart,
    ownRefailures,
    stoppedAtMax: atMax(),
    interrupted: o.signal.aborted,
    foundIds,
    elapsedMs: Date.now() - started,
  };
}

/**
 * Read a whole DLQ once (holding nothing afterwards) and return the snapshot letters `filter`
 * chooses: what a prompt counts before anything is changed. Null when interrupted.
 */
export async function chooseLetters(
  reader: LetterReader,
  filter: LetterFilter,
  startedAtMs: number,
  signal: AbortSignal,
): Promise<HeldLetter[] | null> {
  const chosen: HeldLetter[] = [];
  try {
    for (let batch = await reader.next(); batch !== null && !signal.aborted; batch = await reader.next()) {
      for (const l of batch) {
        if (snapshotStatus(l.view, startedAtMs, '') === 'snapshot' && matchesFilter(filter, l.view)) chosen.push(l);
      }
    }
  } finally {
    await reader.releaseAll();
  }
  return signal.aborted ? null : chosen;
}

/** Evenly spaced slots at `ratePerSec` (no bursts); no rate, no waiting. */
export class Pacer {
  private nextAtMs = 0;
  constructor(private readonly ratePerSec: number | undefined) {}

  /** Wait for the next slot, calling `tick` at least every 5 s meanwhile (holds stay alive). False if aborted. */
  async wait(signal: AbortSignal, tick: () => Promise<void>): Promise<boolean> {
    if (signal.aborted) return false;
    if (!this.ratePerSec) return true;
    const at = Math.max(Date.now(), this.nextAtMs);
    this.nextAtMs = at + 1000 / this.ratePerSec;
    for (let left = at - Date.now(); left > 0; left = at - Date.now()) {
      try {
        await sleep(Math.min(left, 5000), signal);
      } catch {
        return false;
      }
      await tick();
    }
    return !signal.aborted;
  }
}

/**
 * Progress on stderr: on a terminal one line redrawn in place (at most 10 times a second);
 * otherwise a line for the first letter, then one per 100 letters or per 5 s, whichever comes first.
 */
export class ProgressLine {
  private lastAtMs = 0;
  private lastCount = 0;
  private drawn = false;

  constructor(
    private readonly render: (s: PassStats) => string,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  update(s: PassStats): void {
    const now = Date.now();
    const count = s.acted + s.failed;
    if (this.out.isTTY) {
      if (now - this.lastAtMs < 100) return;
      this.out.write(`\r\x1b[2K${this.render(s)}`);
      this.drawn = true;
    } else {
      if (this.lastAtMs !== 0 && count - this.lastCount < 100 && now - this.lastAtMs < 5000) return;
      this.out.write(`${this.render(s)}\n`);
      this.lastCount = count;
    }
    this.lastAtMs = now;
  }

  /** Clear the redrawn line before the summary. */
  end(): void {
    if (this.drawn) this.out.write('\r\x1b[2K');
  }
}

/**
 * Ctrl-C while a command changes the DLQ: the first aborts `controller` (the command finishes the
 * letter in hand, gives back what it holds and prints its summary); a second exits at once (held
 * letters come back when their hold runs out). Returns the function that removes the handler.
 */
export function onInterrupt(
  controller: AbortController,
  then = 'finishing the letter in hand, giving back the rest, then a summary',
): () => void {
  const handler = () => {
    if (controller.signal.aborted) {
      process.stderr.write('\ninterrupted again: exiting now; letters still held become visible again within 60 s\n');
      process.exit(130);
    }
    process.stderr.write(`\ninterrupted: ${then}\n`);
    controller.abort();
  };
  process.on('SIGINT', handler);
  return () => process.off('SIGINT', handler);
}

/** Ask on the terminal; only "y" or "yes" confirms (Ctrl-C, anything else or end of input does not). */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const ac = new AbortController();
  rl.on('SIGINT', () => ac.abort());
  try {
    const answer = await rl.question(question, { signal: ac.signal });
    return /^y(es)?$/i.test(answer.trim());
  } catch {
    return false;
  } finally {
    rl.close();
  }
}
