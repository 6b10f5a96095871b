import { Counter, type Registry } from 'prom-client';

/** A count of charge transitions a worker recorded, by processor and the status the charge reached. */
export type ChargeOutcomeCounter = Counter<'processor' | 'outcome'>;

/**
 * One `<name>{processor, outcome}` counter on a worker's registry (so it carries `worker`): the shape
 * of every charge worker's own metric (auth's authorisations, capture's captures). docs/operations.md §5.
 */
export function chargeOutcomeCounter(registry: Registry, name: string, help: string): ChargeOutcomeCounter {
  return new Counter({ name, help, labelNames: ['processor', 'outcome'], registers: [registry] });
}
