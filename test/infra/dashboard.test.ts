/**
 * The CloudWatch dashboard in the synthesised template: it exists, and every metric a widget draws
 * exists — SQS metrics of the stack's own queues, ECS metrics of its own cluster and services, and
 * worker metrics that the collector sidecar really forwards (read back from each task definition's
 * AOT_CONFIG_CONTENT, with the dimensions it declares), which in turn are metrics the workers really
 * export (test/ops/exported-metrics.ts).
 */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { dashboardName } from '../../infra/dashboard.js';
import { WORKER_NAMES } from '../../infra/config.js';
import { QUEUE_KEYS, QUEUES_WITH_DLQ, resourceNames } from '../../shared/resources.js';
import { exportedSeries } from '../ops/exported-metrics.js';
import { type CfnTemplate, DEPLOYABLE, findBy, resourcesOf, synth } from './support.js';

const names = resourceNames('payfleet-');
const NAMESPACE = 'Payfleet/payfleet';

/** SQS's queue metrics (AWS/SQS) that the dashboard may draw. */
const SQS_METRICS = new Set([
  'ApproximateNumberOfMessagesVisible',
  'ApproximateNumberOfMessagesNotVisible',
  'ApproximateNumberOfMessagesDelayed',
  'ApproximateAgeOfOldestMessage',
  'NumberOfMessagesSent',
  'NumberOfMessagesReceived',
  'NumberOfMessagesDeleted',
]);

/**
 * Turn a `Fn::Join` of strings and references into a string: queue names, cluster and service
 * names and alarm ARNs become the names the template gives them; anything else is an error.
 */
function resolve(t: CfnTemplate, value: unknown): string {
  if (typeof value === 'string') return value;
  const o = value as Record<string, unknown>;
  if (Array.isArray(o['Fn::Join'])) {
    const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => resolve(t, p)).join(sep);
  }
  if (o.Ref === 'AWS::Region') return 'REGION';
  const props = (id: string) => {
    const r = t.Resources[id];
    if (!r) throw new Error(`dangling reference ${id}`);
    return { type: r.Type, p: r.Properties ?? {} };
  };
  if (typeof o.Ref === 'string') {
    const { type, p } = props(o.Ref);
    if (type === 'AWS::ECS::Cluster') return String(p.ClusterName);
    if (type === 'AWS::Logs::LogGroup') return String(p.LogGroupName);
  }
  if (Array.isArray(o['Fn::GetAtt'])) {
    const [id, attr] = o['Fn::GetAtt'] as [string, string];
    const { type, p } = props(id);
    if (type === 'AWS::SQS::Queue' && attr === 'QueueName') return String(p.QueueName);
    if (type === 'AWS::ECS::Service' && attr === 'Name') return String(p.ServiceName);
    if (type === 'AWS::CloudWatch::Alarm' && attr === 'Arn') return `arn:aws:cloudwatch:REGION:ACCOUNT:alarm:${String(p.AlarmName)}`;
  }
  throw new Error(`unexpected reference in the dashboard: ${JSON.stringify(value)}`);
}

interface Widget {
  type: string;
  properties: { title?: string; metrics?: unknown[][]; alarms?: string[]; view?: string };
}

function dashboardOf(t: CfnTemplate): { name: string; widgets: Widget[] } {
  const dashboards = resourcesOf(t, 'AWS::CloudWatch::Dashboard');
  expect(dashboards).toHaveLength(1);
  const props = dashboards[0]![1].Properties!;
  const body = JSON.parse(resolve(t, props.DashboardBody)) as { widgets: Widget[] };
  return { name: String(props.DashboardName), widgets: body.widgets };
}

/** Metric name -> the dimension sets (sorted, comma-joined) the sidecar forwards it with, from every task definition. */
function forwarded(t: CfnTemplate): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const w of WORKER_NAMES) {
    const [, task] = findBy(t, 'AWS::ECS::TaskDefinition', 'Family', `payfleet-${w}`);
    const defs = task.Properties!.ContainerDefinitions as { Name: string; Environment?: { Name: string; Value: unknown }[] }[];
    const sidecar = defs.find((d) => d.Name === 'metrics');
    const content = sidecar?.Environment?.find((e) => e.Name === 'AOT_CONFIG_CONTENT')?.Value;
    expect(content, `${w}: collector config`).toBeDefined();
    const config = parse(resolve(t, content)) as {
      exporters: { awsemf: { namespace: string; metric_declarations: { dimensions: string[][]; metric_name_selectors: string[] }[] } };
    };
    expect(config.exporters.awsemf.namespace).toBe(NAMESPACE);
    for (const decl of config.exporters.awsemf.metric_declarations) {
      for (const selector of decl.metric_name_selectors) {
        const name = /^\^([a-z0-9_]+)\$$/.exec(selector)?.[1];
        expect(name, `an exact-name selector: ${selector}`).toBeDefined();
        const sets = out.get(name!) ?? new Set<string>();
        for (const dims of decl.dimensions) sets.add([...dims].sort().join(','));
        out.set(name!, sets);
      }
    }
  }
  return out;
}

interface Drawn {
  namespace: string;
  metric: string;
  dims: Record<string, string>;
}

/** Every metric a widget draws: plain metrics, and the metric a SEARCH expression looks for. */
function drawnBy(widget: Widget): { drawn: Drawn[]; expressions: string[]; ids: Set<string> } {
  const drawn: Drawn[] = [];
  const expressions: string[] = [];
  const ids = new Set<string>();
  for (const entry of widget.properties.metrics ?? []) {
    const last = entry.at(-1) as Record<string, unknown> | string;
    if (entry.length === 1 && typeof last === 'object' && typeof last.expression === 'string') {
      const expr = last.expression;
      expressions.push(expr);
      const search = /^SEARCH\('\{([^}]*)\} MetricName="([^"]+)"', '\w+', \d+\)$/.exec(expr);
      if (search) {
        const [namespace, ...dims] = search[1]!.split(',');
        drawn.push({ namespace: namespace!, metric: search[2]!, dims: Object.fromEntries(dims.map((d) => [d, '*'])) });
      }
      continue;
    }
    const plain = entry.filter((e) => typeof e === 'string') as string[];
    const [namespace, metric, ...pairs] = plain;
    const dims: Record<string, string> = {};
    for (let i = 0; i < pairs.length; i += 2) dims[pairs[i]!] = pairs[i + 1]!;
    drawn.push({ namespace: namespace!, metric: metric!, dims });
    if (typeof last === 'object' && typeof last.id === 'string') ids.add(last.id);
  }
  return { drawn, expressions, ids };
}

describe('Stack: CloudWatch dashboard', () => {
  it('exists as <prefix>fleet, with an output linking to it', () => {
    const { json } = synth();
    expect(dashboardOf(json).name).toBe(dashboardName('payfleet-'));
    expect(dashboardName('payfleet-')).toBe('payfleet-fleet');
    expect(JSON.stringify(json.Outputs?.DashboardUrl)).toContain('#dashboards:name=payfleet-fleet');
  });

  it('draws only metrics that exist: its own queues, cluster and services, and worker metrics the sidecar forwards', () => {
    const { json } = synth();
    const { widgets } = dashboardOf(json);
    const queueNames = new Set(resourcesOf(json, 'AWS::SQS::Queue').map(([, q]) => String(q.Properties!.QueueName)));
    const serviceNames = new Set(resourcesOf(json, 'AWS::ECS::Service').map(([, s]) => String(s.Properties!.ServiceName)));
    const fwd = forwarded(json);
    const problems: string[] = [];
    for (const w of widgets.filter((x) => x.type === 'metric')) {
      const where = `widget "${w.properties.title}"`;
      const { drawn, expressions, ids } = drawnBy(w);
      for (const m of drawn) {
        const dimKeys = Object.keys(m.dims).sort().join(',');
        switch (m.namespace) {
          case 'AWS/SQS':
            if (!SQS_METRICS.has(m.metric)) problems.push(`${where}: AWS/SQS has no ${m.metric}`);
            if (dimKeys !== 'QueueName' || !queueNames.has(m.dims.QueueName!)) problems.push(`${where}: not a queue of this stack: ${m.dims.QueueName}`);
            break;
          case 'AWS/ECS':
          case 'ECS/ContainerInsights':
            if (!['CPUUtilization', 'MemoryUtilization', 'RunningTaskCount'].includes(m.metric)) problems.push(`${where}: ${m.metric}?`);
            if (m.dims.ClusterName !== 'payfleet-fleet' || !serviceNames.has(m.dims.ServiceName!))
              problems.push(`${where}: not this stack's cluster/service: ${JSON.stringify(m.dims)}`);
            break;
          case NAMESPACE: {
            const sets = fwd.get(m.metric);
            if (!sets) problems.push(`${where}: the sidecar does not forward ${m.metric}`);
            else if (!sets.has(dimKeys)) problems.push(`${where}: ${m.metric} is forwarded with [${[...sets].join(' | ')}], not [${dimKeys}]`);
            if (m.dims.worker && m.dims.worker !== '*' && !(WORKER_NAMES as readonly string[]).includes(m.dims.worker))
              problems.push(`${where}: no worker ${m.dims.worker}`);
            break;
          }
          default:
            problems.push(`${where}: unexpected namespace ${m.namespace}`);
        }
      }
      // Math expressions may only use the ids defined in the same widget.
      for (const expr of expressions) {
        if (expr.startsWith('SEARCH(')) continue;
        for (const word of expr.match(/[a-zA-Z_][a-zA-Z0-9_]*/g) ?? [])
          if (!['IF', 'FILL', 'SUM', 'AVG', 'MAX', 'MIN', 'RATE'].includes(word) && !ids.has(word))
            problems.push(`${where}: expression uses ${word}, which the widget does not define`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('forwards through the sidecar only metrics the workers export', () => {
    const exported = exportedSeries();
    expect([...forwarded(synth().json).keys()].filter((m) => !exported.has(m))).toEqual([]);
  });

  it('shows every queue with the age of its oldest message, every DLQ, every alarm, and the success rate from succeeded and dead-lettered', () => {
    const { json } = synth();
    const { widgets } = dashboardOf(json);
    const all = widgets.flatMap((w) => drawnBy(w).drawn);
    for (const key of QUEUE_KEYS)
      expect(all.some((m) => m.metric === 'ApproximateAgeOfOldestMessage' && m.dims.QueueName === names.queue(key)), key).toBe(true);
    for (const key of QUEUES_WITH_DLQ)
      expect(all.some((m) => m.metric === 'ApproximateNumberOfMessagesNotVisible' && m.dims.QueueName === names.dlq(key)), key).toBe(true);

    const alarmWidget = widgets.find((w) => w.type === 'alarm');
    // The fleet's alarms (scaling policies add unnamed alarms of their own).
    const alarmNames = resourcesOf(json, 'AWS::CloudWatch::Alarm')
      .map(([, a]) => String(a.Properties!.AlarmName ?? ''))
      .filter((n) => n.startsWith('payfleet-'));
    expect(alarmWidget?.properties.alarms?.map((arn) => arn.slice(arn.lastIndexOf(':') + 1)).sort()).toEqual(alarmNames.sort());

    const success = widgets.find((w) => w.properties.title?.startsWith('Success rate'));
    expect(success).toBeDefined();
    const { drawn, expressions } = drawnBy(success!);
    for (const worker of ['auth', 'capture', 'payout']) {
      expect(drawn).toContainEqual({ namespace: NAMESPACE, metric: 'payfleet_messages_succeeded_total', dims: { worker } });
      expect(drawn).toContainEqual({ namespace: NAMESPACE, metric: 'payfleet_messages_dead_lettered_total', dims: { worker } });
    }
    // ok / (ok + dead), per worker: the ratio's denominator adds the dead letters.
    for (const e of expressions) expect(e).toMatch(/FILL\((ok\d+), 0\) \/ \(FILL\(\1, 0\) \+ FILL\(dead\d+, 0\)\)/);
    expect(all.some((m) => m.metric === 'payfleet_breaker_state' && 'dependency' in m.dims)).toBe(true);
  });

  it('leaves out the worker-metric widgets without the metrics sidecar, and keeps the queues', () => {
    const { json } = synth({ ...DEPLOYABLE, metricsSidecar: 'false' });
    const drawn = dashboardOf(json).widgets.flatMap((w) => drawnBy(w).drawn);
    expect(drawn.filter((m) => m.namespace.startsWith('Payfleet/'))).toEqual([]);
    expect(drawn.filter((m) => m.metric === 'ApproximateAgeOfOldestMessage')).toHaveLength(QUEUE_KEYS.length);
  });
});
