/**
 * The importable dashboards and alerts under ops/ (a Grafana dashboard and Prometheus alert rules for
 * the workers' GET /metrics) are valid, and every expression in them names metrics, and labels of
 * those metrics, that the workers really export (test/ops/exported-metrics.ts builds that set from
 * the code). A renamed metric or a typo in a label fails here, not on an operator's screen.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from '../support/processes.js';
import { type ExportedSeries, exportedSeries } from './exported-metrics.js';
import { promqlRefs } from './promql.js';

const SERIES = exportedSeries();
const GRAFANA = join(ROOT, 'ops/grafana/payfleet.json');
const ALERTS = join(ROOT, 'ops/prometheus/alerts.yml');

/** What is wrong with one expression against the exported series: unknown names, unknown labels. */
function problemsOf(expr: string, where: string): string[] {
  const problems: string[] = [];
  let refs: ReturnType<typeof promqlRefs>;
  try {
    refs = promqlRefs(expr);
  } catch (err) {
    return [`${where}: ${(err as Error).message}`];
  }
  if (refs.selectors.length === 0) problems.push(`${where}: names no metric: ${expr}`);
  const used: ExportedSeries[] = [];
  for (const s of refs.selectors) {
    const series = SERIES.get(s.metric);
    if (!series) {
      problems.push(`${where}: ${s.metric} is not exported by any worker`);
      continue;
    }
    used.push(series);
    for (const l of s.labels) if (!series.labels.has(l)) problems.push(`${where}: ${s.metric} has no label ${l}`);
  }
  // A grouping label must exist on at least one series of the expression (e.g. `by (worker)` on `up` does not).
  for (const l of refs.grouping) {
    if (used.length > 0 && !used.some((u) => u.labels.has(l))) problems.push(`${where}: no metric of the expression has label ${l}`);
  }
  return problems;
}

/** Split at `/` outside parentheses: numerator and denominator of a ratio. */
function ratio(expr: string): { numerator: string; denominator: string } | undefined {
  let depth = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '/' && depth === 0) return { numerator: expr.slice(0, i), denominator: expr.slice(i + 1) };
  }
  return undefined;
}

const metricsOf = (expr: string) => new Set(promqlRefs(expr).selectors.map((s) => s.metric));

/**
 * A success rate is succeeded / (succeeded + dead-lettered): dead-lettered messages are counted only
 * in payfleet_messages_dead_lettered_total, so a rate over `received` (which counts redeliveries)
 * or over succeeded alone would be wrong.
 */
function expectSuccessRatio(expr: string): void {
  const r = ratio(expr.replace(/\s+/g, ' ').trim().replace(/^\((.*)\)$/, '$1'));
  expect(r, `a ratio: ${expr}`).toBeDefined();
  expect(metricsOf(r!.numerator)).toEqual(new Set(['payfleet_messages_succeeded_total']));
  expect(metricsOf(r!.denominator)).toEqual(new Set(['payfleet_messages_succeeded_total', 'payfleet_messages_dead_lettered_total']));
  expect(r!.denominator).toMatch(/\+/);
}

/** GitHub's heading anchors of a markdown file. */
function anchorsOf(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const line of markdown.split('\n')) {
    const h = /^#{1,6}\s+(.*)$/.exec(line);
    if (!h) continue;
    out.add(
      h[1]!
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    );
  }
  return out;
}

interface GrafanaPanel {
  type: string;
  title: string;
  id: number;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: { refId: string; expr: string; legendFormat?: string; datasource?: { uid: string } }[];
}

describe('promqlRefs', () => {
  it('finds metric names and their matcher labels, skipping functions, aggregations, keywords, ranges and variables', () => {
    const refs = promqlRefs(
      'histogram_quantile(0.99, sum by (le, queue) (rate(payfleet_processing_seconds_bucket{job=~"$job", queue!="x,y"}[$__rate_interval]))) > bool 1 and on (queue) up == 0',
    );
    expect(refs.selectors).toEqual([
      { metric: 'payfleet_processing_seconds_bucket', labels: ['job', 'queue'] },
      { metric: 'up', labels: [] },
    ]);
    expect(refs.grouping).toEqual(['le', 'queue', 'queue']);
    expect(promqlRefs('sum(x_total) by (worker) / count without (instance) (y)').selectors.map((s) => s.metric)).toEqual([
      'x_total',
      'y',
    ]);
    expect(() => promqlRefs('{__name__="x"}')).toThrow(/without a metric name/);
  });

  it('catches what the dashboards and alerts must not contain', () => {
    expect(problemsOf('rate(payfleet_messages_succeded_total[5m])', 'typo')).toEqual([
      'typo: payfleet_messages_succeded_total is not exported by any worker',
    ]);
    expect(problemsOf('payfleet_breaker_state{service="lhv"}', 'label')).toEqual(['label: payfleet_breaker_state has no label service']);
    expect(problemsOf('sum by (worker) (up)', 'grouping')).toEqual(['grouping: no metric of the expression has label worker']);
    expect(problemsOf('histogram_quantile(0.9, rate(payfleet_processing_seconds[5m]))', 'suffix')).toEqual([
      'suffix: payfleet_processing_seconds is not exported by any worker',
    ]);
    expect(problemsOf('sum by (le) (rate(payfleet_outbound_request_duration_seconds_bucket[5m]))', 'ok')).toEqual([]);
  });
});

describe('Grafana dashboard (ops/grafana/payfleet.json)', () => {
  const dashboard = JSON.parse(readFileSync(GRAFANA, 'utf8')) as {
    uid: string;
    title: string;
    schemaVersion: number;
    templating: { list: { name: string; type: string; query?: unknown }[] };
    panels: GrafanaPanel[];
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');

  it('is an importable dashboard: uid, title, a Prometheus datasource variable every panel uses, panels on the 24-column grid', () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.title).toBe('payfleet');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not a JS template
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      const refIds = p.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
    }
  });

  it('names only metrics and labels the workers export, and legends only labels the query keeps', () => {
    const problems: string[] = [];
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        const where = `panel "${p.title}" ${t.refId}`;
        problems.push(...problemsOf(t.expr, where));
        const refs = promqlRefs(t.expr);
        const kept = refs.grouping.length > 0 ? new Set(refs.grouping) : new Set(refs.selectors.flatMap((s) => [...(SERIES.get(s.metric)?.labels ?? [])]));
        for (const m of (t.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g))
          if (!kept.has(m[1]!)) problems.push(`${where}: legend {{${m[1]}}} is not a label of the result`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('shows the success rate as succeeded / (succeeded + dead-lettered), breakers, paused consumers, outbound calls and build info', () => {
    const byTitle = (title: string) => {
      const p = panels.find((x) => x.title === title);
      if (!p) throw new Error(`no panel "${title}"`);
      return p;
    };
    expectSuccessRatio(byTitle('Success rate').targets![0]!.expr);
    const all = panels.flatMap((p) => p.targets!.map((t) => t.expr)).join('\n');
    for (const metric of [
      'payfleet_breaker_state',
      'payfleet_consumer_paused',
      'payfleet_messages_parked',
      'payfleet_outbound_requests_total',
      'payfleet_outbound_request_duration_seconds_bucket',
      'payfleet_aws_call_duration_seconds_bucket',
      'payfleet_build_info',
      'payfleet_messages_dead_lettered_total',
      'payfleet_ledger_emission_lag_seconds',
      'payfleet_charges_overdue_for_capture',
      'payfleet_payout_ready',
    ])
      expect(all).toContain(metric);
  });
});

describe('Prometheus alert rules (ops/prometheus/alerts.yml)', () => {
  const doc = parse(readFileSync(ALERTS, 'utf8')) as { groups: { name: string; rules: Record<string, unknown>[] }[] };
  const rules = doc.groups.flatMap((g) => g.rules);
  const byName = (name: string) => {
    const r = rules.find((x) => x.alert === name);
    if (!r) throw new Error(`no alert ${name}`);
    return r as { alert: string; expr: string; for?: string; labels: Record<string, string>; annotations: Record<string, string> };
  };

  it('is a valid rule file: groups with names and rules; each alert with expr, for, labels and annotations of the right shapes', () => {
    expect(Object.keys(doc)).toEqual(['groups']);
    const groupNames = doc.groups.map((g) => g.name);
    expect(new Set(groupNames).size).toBe(groupNames.length);
    const allowed = new Set(['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations']);
    const names = new Set<string>();
    for (const g of doc.groups) {
      expect(typeof g.name).toBe('string');
      expect(Array.isArray(g.rules) && g.rules.length > 0).toBe(true);
      for (const r of g.rules) {
        const name = String(r.alert);
        for (const key of Object.keys(r)) expect(allowed.has(key), `${name}: key ${key}`).toBe(true);
        expect(name).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/);
        expect(names.has(name), `${name} twice`).toBe(false);
        names.add(name);
        expect(typeof r.expr, name).toBe('string');
        if (r.for !== undefined) expect(String(r.for), name).toMatch(/^([0-9]+(ms|s|m|h|d|w|y))+$/);
        const labels = r.labels as Record<string, unknown>;
        expect(['page', 'ticket'], name).toContain(labels.severity);
        for (const [k, v] of Object.entries(labels)) {
          expect(k).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/);
          expect(typeof v).toBe('string');
        }
        const annotations = r.annotations as Record<string, unknown>;
        expect(typeof annotations.summary, name).toBe('string');
        for (const v of Object.values(annotations)) expect(typeof v).toBe('string');
      }
    }
  });

  it('names only metrics and labels the workers export', () => {
    expect(rules.flatMap((r) => problemsOf(String(r.expr), `alert ${String(r.alert)}`))).toEqual([]);
  });

  it('points every runbook_url at a section that exists in docs/', () => {
    for (const r of rules) {
      const url = (r.annotations as Record<string, string>).runbook_url;
      expect(url, String(r.alert)).toBeDefined();
      const [file, anchor] = url!.split('#');
      expect(existsSync(join(ROOT, file!)), url).toBe(true);
      if (anchor) expect(anchorsOf(readFileSync(join(ROOT, file!), 'utf8')).has(anchor), url).toBe(true);
    }
  });

  it('covers dead letters by code, success rate, open breakers, paused consumers, overdue captures, ledger lag, payout readiness and workers down', () => {
    const grouped = promqlRefs(byName('PayfleetDeadLetters').expr).grouping;
    expect(metricsOf(byName('PayfleetDeadLetters').expr)).toEqual(new Set(['payfleet_messages_dead_lettered_total']));
    expect(grouped).toEqual(expect.arrayContaining(['queue', 'code']));

    // The first clause is the ratio; the second only keeps quiet queues from paging.
    const success = byName('PayfleetSuccessRateLow').expr;
    expectSuccessRatio(success.slice(0, success.indexOf(' < ')));
    expect(success).toMatch(/<\s*0\.\d+/);

    const breaker = byName('PayfleetBreakerOpen');
    expect(metricsOf(breaker.expr)).toEqual(new Set(['payfleet_breaker_state']));
    expect(breaker.for).toMatch(/m$/);
    expect(promqlRefs(breaker.expr).grouping).toEqual(expect.arrayContaining(['dependency']));
    expect(metricsOf(byName('PayfleetConsumerPaused').expr)).toEqual(new Set(['payfleet_consumer_paused']));
    expect(metricsOf(byName('PayfleetCaptureOverdue').expr)).toEqual(new Set(['payfleet_charges_overdue_for_capture']));
    expect(metricsOf(byName('PayfleetLedgerLag').expr)).toEqual(new Set(['payfleet_ledger_emission_lag_seconds']));
    expect(metricsOf(byName('PayfleetPayoutNotReady').expr)).toEqual(new Set(['payfleet_payout_ready']));
    expect(byName('PayfleetWorkerDown').expr).toMatch(/^up\{job=~"payfleet\.\*"\} == 0$/);
    for (const r of rules) expect(byName(String(r.alert)).labels.severity).toBeDefined();
  });
});
