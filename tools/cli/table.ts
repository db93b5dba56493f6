/** A row of cells; `note` is printed on its own line under the row, from the last column on. */
export interface TableRow {
  readonly cells: readonly string[];
  readonly note?: string | undefined;
}

/**
 * A plain text table: a header, a rule, then one line per row, columns two spaces apart.
 * The last column is never padded (it holds the long text), so lines end without spaces.
 */
export function formatTable(header: readonly string[], rows: readonly TableRow[]): string {
  const all = [header, ...rows.map((row) => row.cells)];
  const widths = header.map((_, column) => Math.max(...all.map((cells) => (cells[column] ?? '').length)));
  const last = header.length - 1;
  const line = (cells: readonly string[]): string =>
    header
      .map((_, column) => (column === last ? (cells[column] ?? '') : (cells[column] ?? '').padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  const indent = ' '.repeat(widths.slice(0, last).reduce((sum, width) => sum + width + 2, 0));
  const rule = widths.map((width, column) => '-'.repeat(column === last ? Math.min(width, 60) : width)).join('  ');
  const lines = [line(header), rule];
  for (const row of rows) {
    lines.push(line(row.cells));
    if (row.note !== undefined) lines.push(`${indent}${row.note}`);
  }
  return lines.join('\n');
}

/** `name  value` lines, the values aligned, each line indented by two spaces. */
export function formatPairs(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(...pairs.map(([name]) => name.length));
  return pairs.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`.trimEnd()).join('\n');
}
