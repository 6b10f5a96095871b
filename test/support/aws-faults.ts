/**
 * The answers DynamoDB itself gives when it refuses a request, synthesised byte for byte as the
 * service sends them (awsJson1_0: HTTP status, `x-amzn-requestid`, a JSON body whose `__type`
 * names the error), so the SDK parses them into the same exception classes and the same retry
 * decisions as on AWS. Used by the fault proxy (fault-proxy.ts); nothing of the request is applied.
 *
 * | fault          | operations                        | HTTP | error (what the SDK throws / does)                                            |
 * |----------------|-----------------------------------|------|-------------------------------------------------------------------------------|
 * | `throughput`   | any                               | 400  | ProvisionedThroughputExceededException (SDK retries it as throttling)         |
 * | `throttling`   | any                               | 400  | ThrottlingException (SDK retries it as throttling)                            |
 * | `internal`     | any                               | 500  | InternalServerError (SDK retries it as transient)                            |
 * | `conflict`     | TransactWriteItems                | 400  | TransactionCanceledException, CancellationReasons: one `TransactionConflict`, the others `None` (never retried by the SDK) |
 * | `conflict`     | PutItem, UpdateItem, DeleteItem, BatchWriteItem, ... | 400 | TransactionConflictException (a single-item write meeting an ongoing transaction; not retried by the SDK) |
 * | `unprocessed`  | BatchWriteItem                    | 200  | every requested item back in `UnprocessedItems` (throttled items of a batch)  |
 *
 * DynamoDB Local never produces any of these; on AWS every one of them happens under load.
 */
import { randomUUID } from 'node:crypto';

export type SynthesisedFault = 'throughput' | 'throttling' | 'internal' | 'conflict' | 'unprocessed';

export interface SynthesisedAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

const DDB = 'com.amazonaws.dynamodb.v20120810';

function answer(status: number, body: object): SynthesisedAnswer {
  const text = JSON.stringify(body);
  return {
    status,
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amzn-requestid': randomUUID().replace(/-/g, '').toUpperCase(),
      'content-length': String(Buffer.byteLength(text)),
    },
    body: text,
  };
}

/** How many items a TransactWriteItems body carries (0 if it cannot be read). */
function transactItemCount(body: string): number {
  try {
    const parsed = JSON.parse(body) as { TransactItems?: unknown[] };
    return Array.isArray(parsed.TransactItems) ? parsed.TransactItems.length : 0;
  } catch {
    return 0;
  }
}

/**
 * The answer DynamoDB would give `operation` for `fault`. `conflictItem` picks which item of a
 * transaction reports the conflict (taken modulo the item count), so a run can rotate it over the
 * lease check, the entity, the work item and the events.
 */
export function synthesise(fault: SynthesisedFault, operation: string | undefined, body: string, conflictItem = 0): SynthesisedAnswer {
  switch (fault) {
    case 'throughput':
      return answer(400, {
        __type: `${DDB}#ProvisionedThroughputExceededException`,
        message: 'The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.',
      });
    case 'throttling':
      return answer(400, { __type: 'com.amazon.coral.availability#ThrottlingException', message: 'Rate of requests exceeds the allowed throughput.' });
    case 'internal':
      return answer(500, { __type: `${DDB}#InternalServerError`, message: 'Internal server error' });
    case 'conflict': {
      if (operation !== 'TransactWriteItems') {
        return answer(400, { __type: `${DDB}#TransactionConflictException`, message: 'Transaction is ongoing for the item' });
      }
      const n = Math.max(1, transactItemCount(body));
      const at = ((conflictItem % n) + n) % n;
      const reasons = Array.from({ length: n }, (_, i) =>
        i === at ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' } : { Code: 'None' },
      );
      return answer(400, {
        __type: `${DDB}#TransactionCanceledException`,
        CancellationReasons: reasons,
        Message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r) => r.Code).join(', ')}]`,
      });
    }
    case 'unprocessed': {
      if (operation !== 'BatchWriteItem') throw new Error(`fault proxy: 'unprocessed' applies to BatchWriteItem only, not ${operation}`);
      let items: unknown = {};
      try {
        items = (JSON.parse(body) as { RequestItems?: unknown }).RequestItems ?? {};
      } catch {
        /* an unreadable body: nothing to hand back */
      }
      return answer(200, { UnprocessedItems: items });
    }
  }
}
