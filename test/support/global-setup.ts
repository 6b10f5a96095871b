import type { TestProject } from 'vitest/node';
import { startEmbeddedStack, type EmbeddedStack } from '../../shared/embedded/stack.js';

let stack: EmbeddedStack | undefined;

/**
 * One embedded stack (fauxqs + DynamoDB Local) per test run, on free loopback ports. Test files
 * read its endpoints from `inject('stack')` (see ./stack.ts) and create their own resources under
 * a unique prefix, so files run in parallel without touching each other.
 */
export async function setup(project: TestProject): Promise<void> {
  stack = await startEmbeddedStack();
  project.provide('stack', { region: stack.region, sqsEndpoint: stack.sqsEndpoint, dynamodbEndpoint: stack.dynamodbEndpoint, env: { ...stack.env } });
}

export async function teardown(): Promise<void> {
  await stack?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    stack: { region: string; sqsEndpoint: string; dynamodbEndpoint: string; env: Record<string, string> };
  }
}
