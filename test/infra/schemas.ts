/**
 * Each process' configuration schema, found where its code defines it, for the infra tests that
 * check the deployment's environments (ECS task definitions, docker-compose) against it.
 *
 * A worker's own variables are the `<worker>EnvShape` export of workers/<worker>/main.ts, or of
 * shared/<worker>/config.ts (the ledger keeps its emitter's settings there).
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { awsEnvShape, bootstrapEnvSchema, withAwsEndpointCheck } from '../../shared/config/common.js';
import { workerEnvShape, workerInvariants } from '../../shared/config/worker.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Variables the AWS SDK reads by itself: known to every process, though no schema lists them. */
export const SDK_VARIABLES: ReadonlySet<string> = new Set(['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']);

export interface ProcessSchema {
  /** Every variable the process knows. */
  readonly known: ReadonlySet<string>;
  readonly schema: z.ZodType;
}

type Invariants = (env: never, ctx: z.RefinementCtx) => void;

/**
 * The worker's own env shape and cross-field checks (`<worker>Invariants`, when exported next to
 * the shape), or undefined while neither workers/<worker>/main.ts nor workers/<worker>/config.ts exists.
 */
export async function workerOwn(worker: string): Promise<{ shape: z.ZodRawShape; invariants?: Invariants } | undefined> {
  const files = [join(ROOT, 'workers', worker, 'main.ts'), join(ROOT, 'workers', worker, 'config.ts')].filter((f) =>
    existsSync(f),
  );
  if (files.length === 0) return undefined;
  for (const file of files) {
    const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    const shape = mod[`${worker}EnvShape`];
    const invariants = mod[`${worker}Invariants`];
    if (shape && typeof shape === 'object') {
      return {
        shape: shape as z.ZodRawShape,
        ...(typeof invariants === 'function' ? { invariants: invariants as Invariants } : {}),
      };
    }
  }
  // A worker with no variables of its own has only the common ones.
  return { shape: {} };
}

export async function workerSchema(worker: string): Promise<ProcessSchema | undefined> {
  const own = await workerOwn(worker);
  if (!own) return undefined;
  const shape = { ...workerEnvShape, ...own.shape };
  return {
    known: new Set([...Object.keys(shape), ...SDK_VARIABLES]),
    schema: withAwsEndpointCheck(
      z.object(shape).superRefine((v, ctx) => {
        workerInvariants(v as never, ctx);
        own.invariants?.(v as never, ctx);
      }),
    ),
  };
}

export function bootstrapSchema(): ProcessSchema {
  return {
    known: new Set([...Object.keys(bootstrapEnvSchema.shape), ...SDK_VARIABLES]),
    schema: withAwsEndpointCheck(bootstrapEnvSchema),
  };
}

export const AWS_VARIABLES: ReadonlySet<string> = new Set(Object.keys(awsEnvShape));

/** Parse like the processes do (empty means unset); one line per problem. */
export function problemsOf(schema: ProcessSchema, env: Record<string, string>): string[] {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const result = schema.schema.safeParse(cleaned);
  return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
}
