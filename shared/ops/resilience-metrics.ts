import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Breakers, BreakerState } from '../core/breaker.js';
import type { Logger } from '../log/logger.js';

/**
 * Metrics of the fleet's dependencies: circuit breakers, the consumer's pauses and parked
 * messages, and every outbound call (AWS and HTTP). Names are part of the operator contract
 * (dashboards and alert rules under ops/ read them; docs/operations.md explains each).
 */
export interface ResilienceMetrics {
  /** 0 closed, 1 half-open, 2 open. */
  readonly breakerState: Gauge<'dependency'>;
  readonly breakerTransitions: Counter<'dependency' | 'to'>;
  /** 1 while the consumer does not receive because a dependency it needs is down. */
  readonly consumerPaused: Gauge<'queue'>;
  /** Messages held in the process waiting for a dependency, not spending attempts. */
  readonly messagesParked: Gauge<'queue'>;
  /** status: the HTTP status, or not_sent / ambiguous / breaker_open. */
  readonly outboundRequests: Counter<'service' | 'operation' | 'status'>;
  readonly outboundDuration: Histogram<'service' | 'operation'>;
  /** outcome: ok / error / timeout (the call's deadline passed) / breaker_open. */
  readonly awsCallDuration: Histogram<'service' | 'command' | 'outcome'>;
}

const STATE_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

export function createResilienceMetrics(registry: Registry): ResilienceMetrics {
  const registers = [registry];
  return {
    breakerState: new Gauge({
      name: 'payfleet_breaker_state',
      help: 'Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open',
      labelNames: ['dependency'],
      registers,
    }),
    breakerTransitions: new Counter({
      name: 'payfleet_breaker_transitions_total',
      help: 'Circuit breaker state changes, by dependency and new state',
      labelNames: ['dependency', 'to'],
      registers,
    }),
    consumerPaused: new Gauge({
      name: 'payfleet_consumer_paused',
      help: '1 while the consumer has stopped receiving because a dependency it needs is down',
      labelNames: ['queue'],
      registers,
    }),
    messagesParked: new Gauge({
      name: 'payfleet_messages_parked',
      help: 'Messages held in this process waiting for a dependency to recover (their attempts are not spent)',
      labelNames: ['queue'],
      registers,
    }),
    outboundRequests: new Counter({
      name: 'payfleet_outbound_requests_total',
      help: 'Outbound HTTP requests (token service, processors, LHV) by status: HTTP status, not_sent, ambiguous, breaker_open',
      labelNames: ['service', 'operation', 'status'],
      registers,
    }),
    outboundDuration: new Histogram({
      name: 'payfleet_outbound_request_duration_seconds',
      help: 'Outbound HTTP request latency, whatever the outcome',
      labelNames: ['service', 'operation'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    awsCallDuration: new Histogram({
      name: 'payfleet_aws_call_duration_seconds',
      help: 'AWS call latency including SDK retries, by outcome: ok, error, timeout, breaker_open',
      labelNames: ['service', 'command', 'outcome'],
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
  };
}

/** Mirror every breaker's state into the metrics and the log (one line per transition). */
export function trackBreakers(breakers: Breakers, metrics: ResilienceMetrics, log: Logger): void {
  const show = (name: string, state: BreakerState) => metrics.breakerState.set({ dependency: name }, STATE_VALUE[state]);
  for (const b of breakers.all()) show(b.name, b.state);
  breakers.onCreate((b) => show(b.name, b.state));
  breakers.onTransition((b, from, to, why) => {
    show(b.name, to);
    metrics.breakerTransitions.inc({ dependency: b.name, to });
    const line = { dependency: b.name, from, to, why, retryAfterMs: b.retryAfterMs() };
    if (to === 'open') log.warn(line, `${b.name} is down: circuit open, calls refused until a trial succeeds`);
    else if (to === 'closed') log.info(line, `${b.name} is back: circuit closed`);
    else log.debug(line, `${b.name}: circuit half-open`);
  });
}
