import type { Distribution } from './stats.js';

/** One line of the results: our figure, the baseline it is compared with, and the target. */
export interface Row {
  scenario: string;
  measure: string;
  ours: Distribution | number;
  baseline?: { name: string; value: Distribution | number };
  /** ours / baseline on p50 (or on the plain numbers), < 1 means ours is faster. */
  ratio?: number;
  target?: string;
  met?: boolean;
  note?: string;
}

export function formatTable(rows: readonly Row[]): string {
  const fmt = (v: Distribution | number | undefined) =>
    v === undefined ? '' : typeof v === 'number' ? String(v) : `${v.p50} / ${v.p99} ms`;
  const table = [
    ['scenario', 'measure', 'ours (p50 / p99)', 'baseline', 'baseline (p50 / p99)', 'ratio', 'target', 'met', 'note'],
    ...rows.map((r) => [
      r.scenario,
      r.measure,
      fmt(r.ours),
      r.baseline?.name ?? '',
      fmt(r.baseline?.value),
      r.ratio === undefined ? '' : String(r.ratio),
      r.target ?? '',
      r.met === undefined ? '' : r.met ? 'yes' : 'NO',
      r.note ?? '',
    ]),
  ];
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  return table.map((row) => row.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}
