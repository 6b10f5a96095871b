import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { WORKER_NAMES, type WorkerName } from '../../infra/config.js';
import { type CfnTemplate, grantsOf, logicalIdStartingWith, resourcesOf, synth } from './support.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const CONSUME = [
  'sqs:ChangeMessageVisibility',
  'sqs:DeleteMessage',
  'sqs:GetQueueAttributes',
  'sqs:GetQueueUrl',
  'sqs:ReceiveMessage',
];
const DEAD_LETTER = ['sqs:GetQueueUrl', 'sqs:SendMessage'];
const LEASES = ['dynamodb:ConditionCheckItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem'];
const OUTBOX = ['dynamodb:PutItem'];
const EMF = ['logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents'];

/**
 * What each worker's task role may do, written out by hand (not computed from infra/access.ts):
 * the test fails on any resource or action beyond these, and on any missing.
 */
const EXPECTED: Record<WorkerName, Record<string, string[]>> = {
  auth: {
    'queue:payfleet-auth-requests.fifo': CONSUME,
    'queue:payfleet-auth-requests-dlq.fifo': DEAD_LETTER,
    'table:payfleet-leases': LEASES,
    'table:payfleet-charges': ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
    'table:payfleet-events': OUTBOX,
    'logs:/ecs/payfleet-metrics': EMF,
  },
  capture: {
    'queue:payfleet-capture-requests.fifo': CONSUME,
    'queue:payfleet-capture-requests-dlq.fifo': DEAD_LETTER,
    'table:payfleet-leases': LEASES,
    'table:payfleet-charges': ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
    'table:payfleet-charges/index/awaiting-capture': ['dynamodb:Query'],
    'table:payfleet-events': OUTBOX,
    'logs:/ecs/payfleet-metrics': EMF,
  },
  refund: {
    'queue:payfleet-refund-requests.fifo': CONSUME,
    'queue:payfleet-refund-requests-dlq.fifo': DEAD_LETTER,
    'table:payfleet-leases': LEASES,
    'table:payfleet-refunds': ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
    'table:payfleet-charges': ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
    'table:payfleet-events': OUTBOX,
    'logs:/ecs/payfleet-metrics': EMF,
  },
  payout: {
    'queue:payfleet-payout-events.fifo': CONSUME,
    'queue:payfleet-payout-events-dlq.fifo': DEAD_LETTER,
    'table:payfleet-leases': LEASES,
    'table:payfleet-payouts': ['dynamodb:BatchGetItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
    'table:payfleet-payouts/index/initiable': ['dynamodb:Query'],
    'table:payfleet-batches': ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
    'table:payfleet-batches/index/by-message-request': ['dynamodb:Query'],
    'table:payfleet-events': OUTBOX,
    'logs:/ecs/payfleet-metrics': EMF,
  },
  ledger: {
    'queue:payfleet-ledger-events.fifo': ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'],
    'table:payfleet-leases': LEASES,
    'table:payfleet-events': ['dynamodb:BatchWriteItem', 'dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem'],
    'table:payfleet-events/index/pending': ['dynamodb:Query', 'dynamodb:Scan'],
    'logs:/ecs/payfleet-metrics': EMF,
  },
};

const pascal = (w: string) => `${w[0]!.toUpperCase()}${w.slice(1)}`;
const taskRole = (t: CfnTemplate, w: WorkerName) => logicalIdStartingWith(t, 'AWS::IAM::Role', `${pascal(w)}WorkerTaskRole`);
const executionRole = (t: CfnTemplate, w: WorkerName) =>
  logicalIdStartingWith(t, 'AWS::IAM::Role', `${pascal(w)}WorkerTaskExecutionRole`);
const asObject = (grants: Map<string, Set<string>>) => Object.fromEntries([...grants].map(([r, a]) => [r, [...a].sort()]));

/**
 * The one batch write: the ledger marks sent events emitted as whole-row Puts, 25 per BatchWriteItem
 * (workers/ledger/dynamo-outbox.ts), on rows its UpdateItem grant already lets it rewrite. IAM cannot
 * limit BatchWriteItem to Puts, so the grant stays on that one role and table.
 */
const BATCH_WRITE_ALLOWED = ['ledger table:payfleet-events'];
/** The one delete: auth takes back a charge row its own attempt created (a conditional delete). */
const DELETE_ITEM_ALLOWED = ['auth table:payfleet-charges'];

describe('IAM: one least-privilege task role per worker', () => {
  it.each(WORKER_NAMES)('%s reaches exactly its own queues, DLQ, tables and indexes, with only the actions it uses', (worker) => {
    const { json } = synth();
    expect(asObject(grantsOf(json, taskRole(json, worker)))).toEqual(EXPECTED[worker]);
  });

  it('gives no worker a wildcard action or resource, and no destructive action', () => {
    const { json } = synth();
    for (const worker of WORKER_NAMES) {
      for (const [resource, actions] of grantsOf(json, taskRole(json, worker))) {
        expect(resource, `${worker} resource`).not.toMatch(/\*$|^\*/);
        for (const action of actions) {
          expect(action, `${worker} on ${resource}`).not.toContain('*');
          if (action === 'dynamodb:DeleteItem')
            expect(DELETE_ITEM_ALLOWED, `${worker} on ${resource}: ${action}`).toContain(`${worker} ${resource}`);
          else
            expect(action, `${worker} on ${resource}`).not.toMatch(
              /^(sqs|dynamodb):(Delete(Item|Table|Queue)|Purge|Create|Set|UpdateTable)/,
            );
          // BatchWriteItem can delete too: only the ledger's marks on the outbox may use it.
          if (action.startsWith('dynamodb:BatchWrite'))
            expect(BATCH_WRITE_ALLOWED, `${worker} on ${resource}: ${action}`).toContain(`${worker} ${resource}`);
        }
      }
    }
  });

  it('keeps the workers apart: no role reaches another worker queue or payments/payout tables it does not use', () => {
    const { json } = synth();
    const reach = (w: WorkerName) => [...grantsOf(json, taskRole(json, w)).keys()];
    expect(reach('auth').filter((r) => /payout|batches|capture-requests|ledger-events/.test(r))).toEqual([]);
    expect(reach('capture').filter((r) => /payout|batches|auth-requests|ledger-events/.test(r))).toEqual([]);
    expect(reach('payout').filter((r) => /charges|auth-requests|capture-requests|ledger-events/.test(r))).toEqual([]);
    expect(reach('ledger').filter((r) => /charges|payouts|batches|idempotency|-requests|payout-events|dlq/.test(r))).toEqual([]);
    // The work items live on the entity rows (the row lease): no worker reaches the idempotency table.
    for (const w of WORKER_NAMES) expect(reach(w).filter((r) => /idempotency/.test(r)), w).toEqual([]);
  });

  it('lets each worker read only its own secrets at task start (execution role)', () => {
    const { json } = synth();
    const secretsOf = (w: WorkerName) =>
      [...grantsOf(json, executionRole(json, w))]
        .filter(([, actions]) => actions.has('secretsmanager:GetSecretValue'))
        .map(([resource]) => /secret:(.*)-\?{6}$/.exec(resource)?.[1] ?? resource)
        .sort();
    const processors = ['payfleet-secret/payment-token-service', 'payfleet-secret/stripe', 'payfleet-secret/worldpay'];
    expect(secretsOf('auth')).toEqual(processors);
    expect(secretsOf('capture')).toEqual(['payfleet-secret/stripe', 'payfleet-secret/worldpay']);
    expect(secretsOf('payout')).toEqual(['payfleet-secret/lhv-mtls']);
    expect(secretsOf('ledger')).toEqual([]);
  });

  it('lets the bootstrap task verify structure and write shard rows, never create, change or delete', () => {
    const { json } = synth();
    const grants = asObject(grantsOf(json, logicalIdStartingWith(json, 'AWS::IAM::Role', 'BootstrapTaskRole')));
    const actions = new Set(Object.values(grants).flat());
    expect([...actions].sort()).toEqual([
      'dynamodb:DescribeTable',
      'dynamodb:DescribeTimeToLive',
      'dynamodb:PutItem',
      'sqs:GetQueueAttributes',
      'sqs:GetQueueUrl',
    ]);
    const puts = Object.entries(grants).filter(([, a]) => a.includes('dynamodb:PutItem'));
    expect(puts.map(([r]) => r)).toEqual(['table:payfleet-leases']);
  });

  it('trusts only ECS tasks of the same account', () => {
    const { json } = synth();
    for (const worker of WORKER_NAMES) {
      const role = json.Resources[taskRole(json, worker)]!;
      const [statement] = (role.Properties!.AssumeRolePolicyDocument as { Statement: Record<string, unknown>[] }).Statement;
      expect(statement).toMatchObject({
        Principal: { Service: 'ecs-tasks.amazonaws.com' },
        Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
      });
    }
  });
});

/**
 * The other direction: every AWS call in a worker's code is allowed by its role, so a deploy does
 * not meet AccessDenied. Follows the relative imports from workers/<name>/main.ts and maps each
 * SDK command to IAM actions. The worker kit and the core it wires (shared/runtime, shared/core)
 * are built for every worker whether it uses them or not, so they are not scanned; what a worker
 * takes from them is read from how its code uses them: `consume:` or `new FifoConsumer` (the
 * consumer and its DLQ), `outcomes` (the commit transaction), and leases, which every worker holds.
 */
const COMMAND_ACTIONS: Record<string, string[]> = {
  ReceiveMessage: ['sqs:ReceiveMessage'],
  DeleteMessage: ['sqs:DeleteMessage'],
  DeleteMessageBatch: ['sqs:DeleteMessage'],
  ChangeMessageVisibility: ['sqs:ChangeMessageVisibility'],
  ChangeMessageVisibilityBatch: ['sqs:ChangeMessageVisibility'],
  SendMessage: ['sqs:SendMessage'],
  SendMessageBatch: ['sqs:SendMessage'],
  GetQueueUrl: ['sqs:GetQueueUrl'],
  GetQueueAttributes: ['sqs:GetQueueAttributes'],
  Get: ['dynamodb:GetItem'],
  GetItem: ['dynamodb:GetItem'],
  Put: ['dynamodb:PutItem'],
  PutItem: ['dynamodb:PutItem'],
  Update: ['dynamodb:UpdateItem'],
  UpdateItem: ['dynamodb:UpdateItem'],
  Query: ['dynamodb:Query'],
  Scan: ['dynamodb:Scan'],
  BatchGet: ['dynamodb:BatchGetItem'],
  BatchWrite: ['dynamodb:BatchWriteItem'],
  TransactGet: ['dynamodb:GetItem'],
  TransactWrite: ['dynamodb:ConditionCheckItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
};
const KIT_USES: { readonly signal: RegExp; readonly actions: readonly string[] }[] = [
  // Every worker: lease acquire/renew/release/inspect, queue URLs, the readiness probe.
  { signal: /runWorker\(/, actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'] },
  { signal: /\bconsume:|new FifoConsumer\b/, actions: [...CONSUME, 'sqs:SendMessage'] },
  { signal: /\boutcomes\b/, actions: COMMAND_ACTIONS.TransactWrite! },
  { signal: /queueUrl\(/, actions: ['sqs:GetQueueUrl'] },
  // A row-leased attempt that takes back the row it created (dynamo-row-work.ts: DeleteCommand).
  { signal: /\.discard\(\)/, actions: ['dynamodb:DeleteItem'] },
];
const NOT_SCANNED = /^(shared\/(runtime|core|aws)\/|cli\/)/;

function importGraph(entry: string, skip?: RegExp): string[] {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file) || !existsSync(file)) continue;
    if (skip?.test(file.slice(ROOT.length + 1))) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      queue.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    }
  }
  return [...seen];
}

function actionsUsedBy(worker: WorkerName): { actions: Set<string>; unknown: string[] } {
  const actions = new Set<string>();
  const unknown: string[] = [];
  for (const file of importGraph(join(ROOT, 'workers', worker, 'main.ts'), NOT_SCANNED)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/new (\w+)Command\(/g)) {
      const mapped = COMMAND_ACTIONS[m[1]!];
      if (mapped) for (const a of mapped) actions.add(a);
      else unknown.push(`${m[1]}Command in ${file.slice(ROOT.length + 1)}`);
    }
    for (const use of KIT_USES) if (use.signal.test(text)) for (const a of use.actions) actions.add(a);
  }
  return { actions, unknown };
}

describe('IAM: the roles cover what the worker code calls', () => {
  for (const worker of WORKER_NAMES) {
    const entry = join(ROOT, 'workers', worker, 'main.ts');
    it.skipIf(!existsSync(entry))(`${worker}: every SDK command reachable from workers/${worker}/main.ts is granted`, () => {
      const { json } = synth();
      const { actions, unknown } = actionsUsedBy(worker);
      expect(unknown, 'commands without an IAM mapping in this test').toEqual([]);
      expect(actions.size).toBeGreaterThan(0);
      const granted = new Set([...grantsOf(json, taskRole(json, worker)).values()].flatMap((s) => [...s]));
      expect([...actions].filter((a) => !granted.has(a)).sort()).toEqual([]);
    });
  }

  it('maps what the shared core uses (sanity check of the scanner itself)', () => {
    expect(resourcesOf(synth().json, 'AWS::ECS::Service')).toHaveLength(5);
    const kit = importGraph(join(ROOT, 'shared', 'runtime', 'worker-kit.ts')).map((f) => f.slice(ROOT.length + 1));
    expect(kit).toEqual(
      expect.arrayContaining(['shared/core/consumer.ts', 'shared/core/dynamo-outcomes.ts', 'shared/core/dlq.ts']),
    );
    // The core the kit wires needs nothing beyond what KIT_USES grants a consuming, committing worker.
    const core = new Set<string>();
    for (const file of kit) {
      for (const m of readFileSync(join(ROOT, file), 'utf8').matchAll(/new (\w+)Command\(/g))
        for (const a of COMMAND_ACTIONS[m[1]!] ?? []) core.add(a);
    }
    const kitActions = new Set(KIT_USES.flatMap((u) => u.actions));
    expect([...core].filter((a) => !kitActions.has(a))).toEqual([]);
  });
});
