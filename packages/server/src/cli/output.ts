/** Printing answers: raw JSON with `--json`, aligned columns or `key: value` lines otherwise. */
import type { TextOut } from './io.js';

export function printJson(out: TextOut, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Prints rows under a header, each column as wide as its widest cell. */
export function printTable(out: TextOut, header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  out.write(`${line(header)}\n`);
  for (const row of rows) out.write(`${line(row)}\n`);
}

/** Prints `key: value` lines with the values aligned. */
export function printFields(out: TextOut, fields: ReadonlyArray<readonly [string, string]>): void {
  const width = Math.max(...fields.map(([k]) => k.length)) + 1;
  for (const [key, value] of fields) out.write(`${`${key}:`.padEnd(width)} ${value}\n`);
}
