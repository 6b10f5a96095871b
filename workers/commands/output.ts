/** Human-readable output helpers for the CLI. `--json` output never goes through these. */

export function printTable(headers: readonly string[], rows: readonly (readonly unknown[])[], out: NodeJS.WritableStream = process.stdout): void {
  const cells = rows.map((r) => r.map((c) => (c === undefined || c === null ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  out.write(`${line(headers)}\n`);
  out.write(`${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const r of cells) out.write(`${line(r)}\n`);
}

export function printJson(value: unknown, out: NodeJS.WritableStream = process.stdout): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}
