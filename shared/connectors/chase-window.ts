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
 * This process remembers when it last sent each request-id whose answer it did not get (the end of
 * that call: the request reached Chase no later than then). A request-id it has no memory of (sent by
 * a process that died, or before a restart) was sent before the current attempt began, because
 * attempts of one request are serialised by the charge's lease: the first lookup that finds nothing
 * starts the clock then, which is later than any real send and so errs on the side of waiting.
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
  /** An answer settled it: forget it. */
  settled(requestId: string): void;
  /**
   * A lookup found nothing for `requestId`. Conclusive (true) when the window since the last known
   * send has passed; otherwise false, and, for a request-id this process never sent, the window
   * starts now.
   */
  notFoundIsConclusive(requestId: string): boolean;
  /** Milliseconds until a lookup that finds nothing becomes conclusive; 0 when nothing is pending here. */
  remainingMs(requestId: string): number;
  /** Request-ids pending (tests). */
  readonly size: number;
}

export function createChaseWindow(options: { readonly clock?: Clock; readonly windowMs?: number } = {}): ChaseWindow {
  const clock = options.clock ?? systemClock;
  const windowMs = options.windowMs ?? CHASE_PROCESSING_WINDOW_MS;
  // request-id -> last send time this process knows of (insertion order = age, for pruning).
  const sentAt = new Map<string, number>();

  const prune = (now: number) => {
    // A request-id whose window closed long ago needs no memory: a later lookup that finds nothing
    // restarts the window (slower, never unsafe). Keep twice the window so a retry just past it still
    // concludes without waiting again.
    for (const [id, at] of sentAt) {
      if (now - at < 2 * windowMs) break;
      sentAt.delete(id);
    }
  };
  const touch = (requestId: string, now: number) => {
    sentAt.delete(requestId);
    sentAt.set(requestId, now);
    prune(now);
  };

  return {
    unanswered(requestId) {
      touch(requestId, clock());
    },
    settled(requestId) {
      sentAt.delete(requestId);
    },
    notFoundIsConclusive(requestId) {
      const now = clock();
      const at = sentAt.get(requestId);
      if (at === undefined) {
        touch(requestId, now);
        return false;
      }
      if (now - at >= windowMs) {
        sentAt.delete(requestId);
        return true;
      }
      return false;
    },
    remainingMs(requestId) {
      const at = sentAt.get(requestId);
      return at === undefined ? 0 : Math.max(0, at + windowMs - clock());
    },
    get size() {
      return sentAt.size;
    },
  };
}
