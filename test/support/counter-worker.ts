/**
 * A minimal worker process for proving the exactly-once core with real processes (SIGKILL,
 * racing consumers, duplicate deliveries). Each message `{opId, counterId, amount}` adds `amount`
 * to a counter stored in the charges table and emits one outbox event, under the counter's lease,
 * exactly once per opId. PAYFLEET_TEST_WORK_MS makes each item slow enough to be killed mid-way.
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { MessageParseError } from '../../shared/errors.js';
import { processOnce } from '../../shared/core/work.js';
import { int } from '../../shared/config/env.js';
import { runWorker } from '../../shared/runtime/worker-kit.js';

const Op = z.object({ opId: z.string().min(1), counterId: z.string().min(1), amount: z.number().int() });

await runWorker({
  worker: 'auth',
  env: { PAYFLEET_TEST_WORK_MS: int(0, { min: 0 }) },
  settings: (env) => ({ workMs: env.PAYFLEET_TEST_WORK_MS }),
  build: (kit) => {
    const { workMs } = kit.settings as { workMs: number };
    return {
      consume: {
        queue: 'auth-requests',
        parse: (body) => {
          const r = Op.safeParse(JSON.parse(body));
          if (!r.success) throw new MessageParseError(r.error.message);
          return r.data;
        },
        handle: async (op, ctx) => {
          const outcome = await processOnce(
            { keeper: kit.keeper, idempotency: kit.idempotency, ownerId: kit.ownerId, attemptDeadlineMs: kit.config.lease.leaseMs },
            { leaseKey: `counter#${op.counterId}`, idempotencyKey: `counter-op#${op.opId}` },
            ctx,
            async (w) => {
              ctx.log.info({ opId: op.opId, attempts: w.attempts }, 'effect started');
              await new Promise<void>((resolve, reject) => {
                const t = setTimeout(resolve, workMs);
                w.signal.addEventListener('abort', () => {
                  clearTimeout(t);
                  reject(w.signal.reason);
                });
              });
              const cur = (
                await kit.clients.doc.send(new GetCommand({ TableName: kit.names.table('charges'), Key: { chargeId: op.counterId }, ConsistentRead: true }))
              ).Item as { version?: number; eventSeq?: number; total?: number } | undefined;
              const total = (cur?.total ?? 0) + op.amount;
              await kit.outcomes.commit({
                lease: w.held.lease,
                workItem: { idempotencyKey: `counter-op#${op.opId}`, attemptId: w.attemptId, result: { total } },
                changes: [
                  {
                    table: 'charges',
                    key: { chargeId: op.counterId },
                    expectedVersion: cur?.version ?? 0,
                    set: { total, updatedBy: kit.ownerId },
                    resource: { type: 'payment', id: op.counterId, live: false },
                    currentEventSeq: cur?.eventSeq ?? 0,
                    events: [{ eventType: 'COUNTER_INCREMENTED', details: { opId: op.opId, amount: op.amount } }],
                  },
                ],
              });
              ctx.log.info({ opId: op.opId, total }, 'effect committed');
            },
          );
          if (outcome.status === 'duplicate') ctx.log.info({ opId: op.opId }, 'duplicate acknowledged');
        },
      },
    };
  },
});
