/**
 * Helpers for the infra tests: synthesise the stack once per context (synthesis is the slow part),
 * and resolve CloudFormation references in IAM policies back to the fleet's own resource names.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { buildApp, type Built } from '../../infra/app.js';

/** The context of a deployable template (every deploy blocker answered). */
export const DEPLOYABLE = {
  imageTag: 'test-3f2c1a7',
  paymentTokenServiceUrl: 'https://tokens.internal.example',
  worldpayApiBaseUrl: 'https://secure.worldpay.example/jsp/merchant/xml/paymentService.jsp',
  lhvApiBaseUrl: 'https://connect.lhv.example',
  lhvDebtorName: 'Payfleet Test OU',
  lhvDebtorIban: 'EE717700771001735865',
  alarmEmail: 'payments-oncall@example.com',
} as const;

export interface Synthesised extends Built {
  readonly template: Template;
  readonly json: CfnTemplate;
}

export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly DeletionPolicy?: string;
  readonly UpdateReplacePolicy?: string;
}

export interface CfnTemplate {
  readonly Resources: Record<string, CfnResource>;
  readonly Outputs?: Record<string, unknown>;
}

const cache = new Map<string, Synthesised>();

/** Synthesise (or reuse) the stack for `context`. */
export function synth(context: Record<string, unknown> = DEPLOYABLE): Synthesised {
  const key = JSON.stringify(context);
  let hit = cache.get(key);
  if (!hit) {
    const built = buildApp({ context });
    const template = Template.fromStack(built.stack);
    hit = { ...built, template, json: template.toJSON() as CfnTemplate };
    cache.set(key, hit);
  }
  return hit;
}

/** Logical ids of resources of `type`, with their properties. */
export function resourcesOf(t: CfnTemplate, type: string): [string, CfnResource][] {
  return Object.entries(t.Resources).filter(([, r]) => r.Type === type);
}

/** Exactly one resource of `type` whose `prop` equals `value`. */
export function findBy(t: CfnTemplate, type: string, prop: string, value: unknown): [string, CfnResource] {
  const found = resourcesOf(t, type).filter(([, r]) => JSON.stringify(r.Properties?.[prop]) === JSON.stringify(value));
  if (found.length !== 1) throw new Error(`expected one ${type} with ${prop}=${JSON.stringify(value)}, found ${found.length}`);
  return found[0]!;
}

/**
 * A human name for what a policy `Resource` points at: `queue:<QueueName>`, `table:<TableName>`,
 * `table:<TableName>/index/<name>`, `logs:<LogGroupName>`, or the raw JSON when it is anything else
 * (so an unexpected wildcard shows up in assertion diffs as itself).
 */
export function resourceName(t: CfnTemplate, ref: unknown): string {
  if (typeof ref === 'string') return ref;
  const named = (logicalId: string): string => {
    const r = t.Resources[logicalId];
    if (!r) return `?${logicalId}`;
    const p = r.Properties ?? {};
    switch (r.Type) {
      case 'AWS::SQS::Queue':
        return `queue:${String(p.QueueName)}`;
      case 'AWS::DynamoDB::Table':
        return `table:${String(p.TableName)}`;
      case 'AWS::Logs::LogGroup':
        return `logs:${String(p.LogGroupName)}`;
      default:
        return `${r.Type}:${logicalId}`;
    }
  };
  const o = ref as Record<string, unknown>;
  if (Array.isArray(o['Fn::GetAtt'])) return named(String((o['Fn::GetAtt'] as unknown[])[0]));
  if (typeof o.Ref === 'string') return named(o.Ref);
  if (Array.isArray(o['Fn::Join'])) {
    const [sep, parts] = o['Fn::Join'] as [string, unknown[]];
    return parts.map((part) => (typeof part === 'string' ? part : resourceName(t, part))).join(sep);
  }
  return JSON.stringify(ref);
}

export interface Grant {
  readonly resource: string;
  readonly actions: readonly string[];
}

/**
 * Every (resource -> actions) an IAM role is allowed by the policies attached to it in the
 * template, statement by statement (policies are AWS::IAM::Policy resources naming the role).
 */
export function grantsOf(t: CfnTemplate, roleLogicalId: string): Map<string, Set<string>> {
  const grants = new Map<string, Set<string>>();
  for (const [, policy] of resourcesOf(t, 'AWS::IAM::Policy')) {
    const roles = (policy.Properties?.Roles ?? []) as { Ref?: string }[];
    if (!roles.some((r) => r.Ref === roleLogicalId)) continue;
    const doc = policy.Properties?.PolicyDocument as {
      Statement: { Effect: string; Action: string | string[]; Resource: unknown }[];
    };
    for (const st of doc.Statement) {
      if (st.Effect !== 'Allow') continue;
      const actions = Array.isArray(st.Action) ? st.Action : [st.Action];
      const resources = Array.isArray(st.Resource) ? st.Resource : [st.Resource];
      for (const res of resources) {
        const name = resourceName(t, res);
        const set = grants.get(name) ?? new Set<string>();
        for (const a of actions) set.add(a);
        grants.set(name, set);
      }
    }
  }
  return grants;
}

/** Logical id of the one resource of `type` whose logical id starts with `prefix`. */
export function logicalIdStartingWith(t: CfnTemplate, type: string, prefix: string): string {
  const ids = resourcesOf(t, type)
    .map(([id]) => id)
    .filter((id) => id.startsWith(prefix));
  if (ids.length !== 1) throw new Error(`expected one ${type} starting with ${prefix}, found ${ids.join(', ') || 'none'}`);
  return ids[0]!;
}
