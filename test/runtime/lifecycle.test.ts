import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/log/logger.js';
import { Lifecycle } from '../../shared/runtime/lifecycle.js';

describe('Lifecycle', () => {
  describe('shutdown()', () => {
    it('runs every stage in order even when one fails, then exits with the code once', async () => {
      const ran: string[] = [];
      const exits: number[] = [];
      const lc = new Lifecycle({ logger: silentLogger(), exit: (c) => exits.push(c) });
      lc.onShutdown('a', async () => void ran.push('a'))
        .onShutdown('b', async () => {
          ran.push('b');
          throw new Error('boom');
        })
        .onShutdown('c', async () => void ran.push('c'));
      await Promise.all([lc.shutdown(0), lc.shutdown(0)]);
      expect(ran).toEqual(['a', 'b', 'c']);
      expect(exits).toEqual([0]);
    });

    it('forces exit 1 when the stages overrun the force timeout, without waiting for the stuck stage', async () => {
      const exits: number[] = [];
      let exited!: () => void;
      const exitCalled = new Promise<void>((resolve) => {
        exited = resolve;
      });
      const lc = new Lifecycle({
        logger: silentLogger(),
        exit: (c) => {
          exits.push(c);
          exited();
        },
      });
      let stageEnded = false;
      // A stage that never ends: only the force timer can make the process exit.
      lc.onShutdown('stuck', () => new Promise(() => undefined)).onShutdown('after', async () => {
        stageEnded = true;
      });
      void lc.shutdown(0, 100);
      await exitCalled;
      expect(exits).toEqual([1]);
      expect(stageEnded).toBe(false);
    });
  });
});
