/**
 * Just enough PromQL reading to check dashboards and alert rules against what the workers export:
 * the metric selectors of an expression (name plus the label names its matchers use) and the label
 * names of its `by`/`without`/`on`/`ignoring`/`group_*` clauses. Not a parser: it tokenises, drops
 * range and subquery brackets, string literals and Grafana variables, and calls every identifier
 * that is neither a keyword nor followed by `(` a metric name — which is what PromQL's grammar
 * makes it.
 */

export interface Selector {
  readonly metric: string;
  /** Label names used in its `{...}` matchers. */
  readonly labels: readonly string[];
}

export interface ExprRefs {
  readonly selectors: readonly Selector[];
  /** Label names in grouping and vector-matching clauses. */
  readonly grouping: readonly string[];
}

const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
/** Aggregation operators: followed by `(` or by a `by`/`without` clause. */
const AGGREGATIONS = new Set([
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio',
]);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'atan2', 'inf', 'nan', 'Inf', 'NaN', 'NAN', 'INF']);

const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;

/** The selectors and grouping labels of a PromQL expression; throws on what it cannot read. */
export function promqlRefs(expr: string): ExprRefs {
  // Grafana variables ($__rate_interval, ${job}, $job) only ever stand in for durations or values.
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*/g, '0');
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const closing = (open: string, close: string): number => {
    const end = text.indexOf(close, i);
    if (end < 0) throw new Error(`unclosed ${open} in: ${expr}`);
    return end;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '[') {
      i = closing('[', ']') + 1;
      continue;
    }
    if (c === '{') throw new Error(`a selector without a metric name (use the name, not {__name__=...}): ${expr}`);
    if (/[0-9.]/.test(c)) {
      const m = /(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)/y;
      m.lastIndex = i;
      if (!m.exec(text)) throw new Error(`cannot read a number at ${i}: ${expr}`);
      i = m.lastIndex;
      continue;
    }
    IDENT.lastIndex = i;
    const id = IDENT.exec(text);
    if (!id) {
      i++; // operators, parentheses, commas
      continue;
    }
    const word = id[0];
    i = IDENT.lastIndex;
    skipSpace();
    if (GROUPING.has(word)) {
      if (text[i] === '(') {
        const end = closing('(', ')');
        for (const l of text.slice(i + 1, end).split(',')) if (l.trim()) grouping.push(l.trim());
        i = end + 1;
      }
      continue;
    }
    if (KEYWORDS.has(word) || AGGREGATIONS.has(word) || text[i] === '(') continue; // an operator, or a function / aggregation
    const labels: string[] = [];
    if (text[i] === '{') {
      const end = closing('{', '}');
      for (const matcher of text.slice(i + 1, end).split(',')) {
        const name = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/.exec(matcher);
        if (name) labels.push(name[1]!);
        else if (matcher.trim()) throw new Error(`cannot read matcher "${matcher}" in: ${expr}`);
      }
      i = end + 1;
    }
    selectors.push({ metric: word, labels });
  }
  return { selectors, grouping };
}
