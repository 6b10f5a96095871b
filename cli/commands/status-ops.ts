/**
 * `payfleet status`'s view of the workers: each one's ops endpoint (`/health/ready` and `/metrics`,
 * served on PAYFLEET_OPS_PORT by shared/ops/server.ts), named by the operator with `--ops name=url`
 * or PAYFLEET_OPS_URLS. A worker that does not answer is shown as unreachable: that is a state to
 * report, not an error of the command.
 */

/** One worker process's ops endpoint, as the operator named it. */
export interface OpsTarget {
  readonly name: string;
  /** Base URL, no trailing slash: `<url>/health/ready`, `<url>/metrics`. */
  readonly url: string;
}

/** A usage error of `payfleet status` (exit 2). */
export class StatusUsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'StatusUsageError';
  }
}

/**
 * Parse `name=url` pairs (`--ops auth=http://127.0.0.1:9401`, or PAYFLEET_OPS_URLS split at commas).
 * Names are unique (two processes of one worker: `auth-1=…,auth-2=…`); URLs are http(s) with a host.
 */
export function parseOpsTargets(specs: readonly string[], source: string): OpsTarget[] {
  const out: OpsTarget[] = [];
  for (const raw of specs) {
    const spec = raw.trim();
    if (spec === '') continue;
    const eq = spec.indexOf('=');
    const name = eq > 0 ? spec.slice(0, eq).trim() : '';
    const url = eq > 0 ? spec.slice(eq + 1).trim() : '';
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name))
      throw new StatusUsageError(`${source}: "${spec}" is not name=url (e.g. auth=http://127.0.0.1:9401)`);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new StatusUsageError(`${source}: "${url}" (for ${name}) is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw new StatusUsageError(`${source}: ${name}: only http:// and https:// ops endpoints`);
    if (out.some((t) => t.name === name)) throw new StatusUsageError(`${source}: ${name} is named twice`);
    out.push({ name, url: `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}` });
  }
  return out;
}

/** PAYFLEET_OPS_URLS: `auth=http://127.0.0.1:9401,capture=http://127.0.0.1:9402` (what `payfleet dev` prints). */
export function opsTargetsFromEnv(value: string | undefined): OpsTarget[] {
  return parseOpsTargets((value ?? '').split(','), 'PAYFLEET_OPS_URLS');
}

/** One sample of Prometheus' text format. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

/** A sample value: a float, `NaN`, or `+Inf` / `-Inf` (which Number() does not read). */
function sampleValue(text: string): number | undefined {
  if (/^[+-]?Inf$/i.test(text)) return text.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  const n = Number(text);
  return Number.isNaN(n) && text !== 'NaN' ? undefined : n;
}

/** Parse Prometheus' text exposition format (comments and malformed lines are skipped). */
export function parseMetricsText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line.trim());
    if (!m) continue;
    const value = sampleValue(m[4]!);
    if (value === undefined) continue;
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body);
      if (!l) break;
      labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}

/** payfleet_breaker_state's values. */
export type BreakerState = 'closed' | 'half-open' | 'open';
const BREAKER_STATES: readonly BreakerState[] = ['closed', 'half-open', 'open'];
/** Worst first: open, then half-open, then closed. */
export const breakerRank = (s: BreakerState): number => BREAKER_STATES.indexOf(s);

export interface WorkerStatus {
  readonly name: string;
  readonly url: string;
  /** False when neither /health/ready nor /metrics answered. */
  readonly reachable: boolean;
  /** Why it was unreachable (ECONNREFUSED, timeout …). */
  readonly error?: string;
  /** /health/ready answered 200. */
  readonly ready?: boolean;
  readonly readyStatus?: number;
  /** `ready`, `not ready` or `draining`, from the readiness body. */
  readonly readiness?: string;
  /** Checks that failed, `name: error`. */
  readonly failingChecks?: readonly string[];
  readonly inFlight?: number;
  /** Queues whose consumer has stopped receiving because a dependency is down (payfleet_consumer_paused). */
  readonly paused?: readonly string[];
  /** Messages held waiting for a dependency (payfleet_messages_parked). */
  readonly parked?: number;
  readonly build?: { readonly version: string; readonly commit: string; readonly nodeVersion: string };
  /** payfleet_breaker_state by dependency. */
  readonly breakers?: Readonly<Record<string, BreakerState>>;
  /** /metrics did not answer (readiness did). */
  readonly metricsError?: string;
}

/** The reason a fetch failed, as an operator would search for it. */
function reason(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'timeout';
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
}

async function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json, text/plain' } });
  return { status: res.status, body: await res.text() };
}

/** Summarise a worker's metrics: in flight, paused queues, parked messages, build, breakers. */
export function summariseMetrics(samples: readonly Sample[]): Pick<WorkerStatus, 'inFlight' | 'paused' | 'parked' | 'build' | 'breakers'> {
  let inFlight = 0;
  let parked = 0;
  const paused = new Set<string>();
  const breakers: Record<string, BreakerState> = {};
  let build: WorkerStatus['build'];
  for (const s of samples) {
    switch (s.name) {
      case 'payfleet_messages_in_flight':
        inFlight += s.value;
        break;
      case 'payfleet_messages_parked':
        parked += s.value;
        break;
      case 'payfleet_consumer_paused':
        if (s.value >= 1) paused.add(s.labels.queue ?? '?');
        break;
      case 'payfleet_build_info':
        build = { version: s.labels.version ?? 'unknown', commit: s.labels.commit ?? 'unknown', nodeVersion: s.labels.node_version ?? '?' };
        break;
      case 'payfleet_breaker_state': {
        const dep = s.labels.dependency ?? '?';
        const state = BREAKER_STATES[Math.round(s.value)] ?? 'open';
        const prev = breakers[dep];
        if (!prev || breakerRank(state) > breakerRank(prev)) breakers[dep] = state;
        break;
      }
    }
  }
  return { inFlight, parked, paused: [...paused].sort(), breakers, ...(build ? { build } : {}) };
}

/** Ask one worker for its readiness and metrics, in parallel. Never rejects. */
export async function readWorker(target: OpsTarget, timeoutMs = 3000): Promise<WorkerStatus> {
  const [ready, metrics] = await Promise.allSettled([get(`${target.url}/health/ready`, timeoutMs), get(`${target.url}/metrics`, timeoutMs)]);
  if (ready.status === 'rejected' && metrics.status === 'rejected') {
    return { name: target.name, url: target.url, reachable: false, error: reason(ready.reason) };
  }
  let readiness: Pick<WorkerStatus, 'ready' | 'readyStatus' | 'readiness' | 'failingChecks'> = {};
  if (ready.status === 'fulfilled') {
    let body: { status?: unknown; checks?: { name?: unknown; ok?: unknown; error?: unknown }[] } = {};
    try {
      body = JSON.parse(ready.value.body) as typeof body;
    } catch {
      // Not our ops server, or a proxy's error page: the status code still says it.
    }
    readiness = {
      ready: ready.value.status === 200,
      readyStatus: ready.value.status,
      readiness: typeof body.status === 'string' ? body.status : ready.value.status === 200 ? 'ready' : `HTTP ${ready.value.status}`,
      failingChecks: (Array.isArray(body.checks) ? body.checks : [])
        .filter((c) => c.ok === false)
        .map((c) => `${String(c.name)}: ${String(c.error ?? 'failed')}`),
    };
  } else {
    readiness = { ready: false, readiness: `no answer (${reason(ready.reason)})` };
  }
  const fromMetrics =
    metrics.status === 'fulfilled' && metrics.value.status === 200
      ? summariseMetrics(parseMetricsText(metrics.value.body))
      : { metricsError: metrics.status === 'fulfilled' ? `HTTP ${metrics.value.status}` : reason(metrics.reason) };
  return { name: target.name, url: target.url, reachable: true, ...readiness, ...fromMetrics };
}
