/**
 * `payfleet worker refund` as a child process for the end-to-end refund tests: the worker's own
 * main() with the processors configured from the environment as the CLI does, plus two test seams:
 *
 *   - every refund() and lookupRefund() the worker makes on the in-process sandbox processor is
 *     logged (`test: sandbox refund call` / `test: sandbox refund lookup`, with the refundId): the
 *     sandbox processor is stateless, so these lines are its "stats" (refunds it was asked to make);
 *   - REFUND_TEST_HANG_AFTER_SANDBOX_REFUND=1: a sandbox refund is made and then never answered (the
 *     call stays in flight, as a timeout after success at a processor server), so a test can SIGKILL
 *     the worker between REFUND_SUBMITTED and the answer;
 *   - REFUND_TEST_CLOCK_FILE: the processors' clock (Chase's 70-second window) is real time plus the
 *     offset in ms written in that file.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseEnv } from '../../shared/config/env.js';
import { createProcessorRegistry, processorRegistryConfigFromEnv } from '../../shared/connectors/registry.js';
import type { ProcessorConnector, ProcessorName, RefundPort } from '../../shared/connectors/types.js';
import { main, refundEnvShape } from '../../workers/refund/main.js';

const clockFile = process.env.REFUND_TEST_CLOCK_FILE;
const offset = () => {
  if (!clockFile) return 0;
  try {
    return Number(readFileSync(clockFile, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
};
const hang = process.env.REFUND_TEST_HANG_AFTER_SANDBOX_REFUND === '1';
const say = (msg: string, fields: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify({ level: 'info', msg, ...fields })}\n`);

const env = parseEnv(z.object(refundEnvShape));
const registry = createProcessorRegistry({
  ...processorRegistryConfigFromEnv(env),
  clock: () => Date.now() + offset(),
});
const connectors = new Map<ProcessorName, ProcessorConnector>(registry.connectors);
const sandbox = registry.connectors.get('sandbox') as (ProcessorConnector & RefundPort) | undefined;
if (sandbox) {
  const { refund, lookupRefund } = sandbox;
  const counted: ProcessorConnector & RefundPort = {
    ...sandbox,
    async refund(req, signal) {
      const outcome = await refund.call(sandbox, req, signal);
      say('test: sandbox refund call', {
        refundId: req.refundId,
        chargeId: req.chargeId,
        amount: req.amount,
        outcome: outcome.kind,
      });
      if (hang) return new Promise<never>(() => undefined);
      return outcome;
    },
    async lookupRefund(req, signal) {
      const found = await lookupRefund.call(sandbox, req, signal);
      say('test: sandbox refund lookup', { refundId: req.refundId, chargeId: req.chargeId, found: found.kind });
      return found;
    },
  };
  connectors.set('sandbox', counted);
}

await main({
  registry: {
    connectors,
    get: (name) => (name === 'sandbox' && connectors.has('sandbox') ? connectors.get('sandbox')! : registry.get(name)),
    close: () => registry.close(),
  },
});
