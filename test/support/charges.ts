import { randomUUID } from 'node:crypto';
import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { Charge } from '../../shared/charges/charge.js';
import type { TestStack } from './stack.js';

export async function readCharge(stack: TestStack, chargeId: string): Promise<Charge | undefined> {
  const r = await stack.clients.doc.send(new GetCommand({ TableName: stack.names.table('charges'), Key: { chargeId }, ConsistentRead: true }));
  return r.Item as Charge | undefined;
}

export async function readEvents(stack: TestStack, resourceId: string): Promise<{ sequence: number; eventType: string; details: Record<string, unknown> }[]> {
  const r = await stack.clients.doc.send(
    new QueryCommand({
      TableName: stack.names.table('events'),
      KeyConditionExpression: 'resourceId = :r',
      ExpressionAttributeValues: { ':r': resourceId },
      ConsistentRead: true,
    }),
  );
  return (r.Items ?? []) as { sequence: number; eventType: string; details: Record<string, unknown> }[];
}

/** An AuthorisationRequested body (docs/contract.md §2) with sensible defaults. */
export function authRequest(overrides: Partial<Record<string, unknown>> & { chargeId: string }) {
  return {
    type: 'AuthorisationRequested',
    authRequestId: randomUUID(),
    gatewayAccountId: 'gw-1',
    processor: 'sandbox',
    amount: 1250,
    currency: 'GBP',
    paymentTokenId: 'tok_4242424242424242',
    reference: `ref-${overrides.chargeId}`,
    description: 'test charge',
    requestedAt: new Date().toISOString(),
    ...overrides,
  };
}
