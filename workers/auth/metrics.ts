import { Counter, type Registry } from 'prom-client';

/** The auth worker's own metrics, on the worker's registry (so they carry `worker`). docs/operations.md §5. */
export interface AuthMetrics {
  /** Authorisations recorded, by processor and resulting charge status. */
  readonly authorisations: Counter<'processor' | 'outcome'>;
}

export function createAuthMetrics(registry: Registry): AuthMetrics {
  return {
    authorisations: new Counter({
      name: 'payfleet_authorisations_total',
      help: 'Authorisations recorded, by processor and resulting charge status',
      labelNames: ['processor', 'outcome'],
      registers: [registry],
    }),
  };
}
