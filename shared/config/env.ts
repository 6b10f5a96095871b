import { z } from 'zod';
import { ConfigError } from '../errors.js';

/**
 * Parse `env` with a zod object whose keys are environment variable names, once, into a deeply
 * frozen object. Every problem becomes one line naming the variable; none of them echoes a value
 * (a misplaced secret must not end up in a start-up log).
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined> = process.env): Readonly<z.output<S>> {
  // Empty strings mean "unset": `FOO= payfleet worker` should fall back to FOO's default.
  const cleaned: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== '') cleaned[k] = v;
  const result = schema.safeParse(cleaned);
  if (!result.success) throw new ConfigError(formatIssues(result.error, cleaned));
  return deepFreeze(result.data);
}

function formatIssues(error: z.ZodError, env: Record<string, string>): string[] {
  return error.issues.map((issue) => {
    const name = issue.path.length > 0 ? issue.path.join('.') : '(configuration)';
    // zod 4 leaves `issue.input` out (values must not be echoed anyway), so "not set" is decided by
    // looking at the variable itself: PAYFLEET_CONCURRENCY=abc is a bad value, not a missing one.
    const unset = issue.path.length === 1 && env[String(issue.path[0])] === undefined;
    const message = issue.code === 'invalid_type' && unset ? 'is required but not set' : issue.message;
    return `${name}: ${message}`;
  });
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** An integer variable with bounds and a default. */
export function int(defaultValue: number, opts: { min?: number; max?: number } = {}) {
  let s = z.coerce.number({ error: 'must be a whole number' }).int({ error: 'must be a whole number' });
  if (opts.min !== undefined) s = s.min(opts.min, { error: `must be >= ${opts.min}` });
  if (opts.max !== undefined) s = s.max(opts.max, { error: `must be <= ${opts.max}` });
  return s.default(defaultValue);
}

/** A boolean variable: true/false/1/0/yes/no/on/off. */
export function bool(defaultValue: boolean) {
  return z
    .stringbool({ error: 'must be true or false' })
    .default(defaultValue);
}

/** An http(s) URL, trailing slash removed. */
export function url() {
  return z
    .string()
    .refine((v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        return false;
      }
    }, { error: 'must be an http(s) URL' })
    .transform((v) => v.replace(/\/+$/, ''));
}

/** A duration like `60 minutes`, `90s`, `1500ms`, or a bare number of `unit`s. Returns ms. */
export function duration(defaultValue: string, bareUnit: 'ms' | 's' | 'min' = 's') {
  return z
    .string()
    .default(defaultValue)
    .transform((v, ctx) => {
      const ms = parseDurationMs(v, bareUnit);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration such as "60 minutes", "90s" or "1500ms"' });
        return z.NEVER;
      }
      return ms;
    });
}

const UNIT_MS: Record<string, number> = {
  ms: 1, millisecond: 1, milliseconds: 1,
  s: 1000, sec: 1000, secs: 1000, second: 1000, seconds: 1000,
  m: 60_000, min: 60_000, mins: 60_000, minute: 60_000, minutes: 60_000,
  h: 3_600_000, hour: 3_600_000, hours: 3_600_000,
};

export function parseDurationMs(text: string, bareUnit: 'ms' | 's' | 'min' = 's'): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = (m[2] ?? '').toLowerCase() || bareUnit;
  const factor = UNIT_MS[unit];
  if (factor === undefined) return undefined;
  return Math.round(Number(m[1]) * factor);
}
