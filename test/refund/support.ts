/**
 * A scripted processor with the refund port, for the refund worker's tests: every call counted,
 * every refund() remembered with its idempotency key, answers taken from a script (or a default).
 */
import type {
  ProcessorConnector,
  RefundLookupOutcome,
  RefundLookupRequest,
  RefundOutcome,
  RefundPort,
  RefundRequest,
} from '../../shared/connectors/types.js';
import type { ProcessorRegistry } from '../../shared/connectors/registry.js';

export interface RefundScript {
  /** Answers of refund(), in order; then `refundDefault`. */
  refund?: RefundOutcome[];
  refundDefault?: RefundOutcome;
  /** Answers of lookupRefund(), in order; then `lookupDefault`. */
  lookup?: RefundLookupOutcome[];
  lookupDefault?: RefundLookupOutcome;
  /** Called inside refund() before it answers (e.g. to read what was committed before the call). */
  onRefund?: (req: RefundRequest) => Promise<void> | void;
}

export interface ScriptedProcessor {
  readonly connector: ProcessorConnector & RefundPort;
  readonly registry: Pick<ProcessorRegistry, 'get'>;
  readonly refunds: RefundRequest[];
  readonly lookups: RefundLookupRequest[];
}

const unreachable = (what: string) => async (): Promise<never> => {
  throw new Error(`the refund worker never calls ${what}`);
};

export function scriptedProcessor(script: RefundScript = {}): ScriptedProcessor {
  const refunds: RefundRequest[] = [];
  const lookups: RefundLookupRequest[] = [];
  const connector: ProcessorConnector & RefundPort = {
    name: 'sandbox',
    authorise: unreachable('authorise'),
    capture: unreachable('capture'),
    void: unreachable('void'),
    lookup: unreachable('lookup'),
    async refund(req) {
      refunds.push(req);
      await script.onRefund?.(req);
      return script.refund?.shift() ?? script.refundDefault ?? { kind: 'refunded', refundRef: `re_${refunds.length}` };
    },
    async lookupRefund(req) {
      lookups.push(req);
      return script.lookup?.shift() ?? script.lookupDefault ?? { kind: 'not_found' };
    },
  };
  return { connector, registry: { get: () => connector }, refunds, lookups };
}
