/**
 * Chase's 70-second rule. J.P. Morgan stops processing a request 70 s after it arrived and keeps no
 * record of one that timed out, so "no payment with this request-id" means "never will be" only once
 * 70 s have passed since the request was sent. Before that the request may still be in processing,
 * invisible to a lookup, and a re-send with the same request-id could be processed as a second one.
 *
 *   send (request-id R) ──── answer lost ─┐
 *   Chase:  [processing R ................ up to 70 s ...........] then recorded, or dropped
 *   lookup R:    nothing ─> inconclusive  nothing ─> inconclusive   │ nothing ─> conclusive: re-send R
 *   |<------------------------- WINDOW_MS from the last send ------>|
 *
 * This process remembers, per request-id, what it last saw: an answer from Chase (then "nothing
 * found" is final: the request was processed or refused, not left running), or a send whose answer it
 * lost, and when (the end of that call: the request reached Chase no later than then). A request-id
 * it has no memory of (sent by a process that died, or before a restart) was sent before the current
 * attempt began, because attempts of one request are serialised by the charge's lease: the first
 * lookup that finds nothing starts the clock then, later than any real send, so it errs on the side
 * of waiting.
 *
 * The memory is per process. What it cannot see: a request whose answer was lost by another worker
 * *after* this one last saw it (the message moved from this worker to another and back within 70 s).
 * A durable send time on the charge would close that; the processor port has no field for it.
 *
 * The connector reports an inconclusive "not found" as `unknown` (the ambiguous outcome the workers
 * already have): the auth worker keeps the charge AUTHORISATION_READY and retries the lookup, the
 * capture worker defers the capture; neither re-sends until the window has closed.
 */
import { systemClock, type Clock } from '../core/clock.js';

/** J.P. Morgan's processing expiry for one request. */
export const CHASE_PROCESSING_WINDOW_MS = 70_000;

export interface ChaseWindow {
  /** The request with this request-id went out and no answer came back (or an answer that settles nothing). */
  unanswered(requestId: string): void;
  /** Chase answered it (or it never left this process): a lookup that finds nothing now is conclusive. */
  settled(requestId: string): void;
  /**
   * A lookup found nothing for `requestId`. Conclusive (true) when this process knows the request
   * was answered, or the window since its last unanswered send has passed; otherwise false, and,
   * for a request-id this process knows nothing of, the window starts now.
   */
  notFoundIsConclusive(requestId: string): boolean;
  /** Milliseconds until a lookup that finds nothing becomes conclusive; 0 when nothing is pending here. */
  remainingMs(requestId: string): number;
  /** Request-ids remembered (tests). */
  readonly size: number;
}

export function createChaseWindow(options: { readonly clock?: Clock; readonly windowMs?: number } = {}): ChaseWindow {
  const clock = options.clock ?? systemClock;
  const windowMs = options.windowMs ?? CHASE_PROCESSING_WINDOW_MS;
  // request-id -> what this process last saw of it, and when (insertion order = age, for pruning).
  const seen = new Map<string, { at: number; answered: boolean }>();

  // A request-id last seen long ago needs no memory: a later lookup that finds nothing restarts the
  // window (slower, never unsafe). Twice the window, so a retry just past it concludes at once.
  const prune = (now: number) => {
    for (const [id, s] of seen) {
      if (now - s.at < 2 * windowMs) break;
      seen.delete(id);
    }
  };
  const note = (requestId: string, answered: boolean) => {
    const now = clock();
    seen.delete(requestId);
    seen.set(requestId, { at: now, answered });
    prune(now);
  };

  return {
    unanswered(requestId) {
      note(requestId, false);
    },
    settled(requestId) {
      note(requestId, true);
    },
    notFoundIsConclusive(requestId) {
      const s = seen.get(requestId);
      if (s === undefined) {
        note(requestId, false);
        return false;
      }
      return s.answered || clock() - s.at >= windowMs;
    },
    remainingMs(requestId) {
      const s = seen.get(requestId);
      return s === undefined || s.answered ? 0 : Math.max(0, s.at + windowMs - clock());
    },
    get size() {
      return seen.size;
    },
  };
}
