// Plain-text tables and TARGET lines for the benchmark's stdout.

export type Cell = string | number | undefined

/** Fixed-width table: text columns left-aligned, numeric columns right-aligned; '–' for missing. */
export function formatTable (headers: string[], rows: Cell[][]): string {
  const text = rows.map((r) => r.map((c) => c === undefined ? '–' : String(c)))
  const numeric = headers.map((_, i) => rows.every((r) => r[i] === undefined || typeof r[i] === 'number' || /^[\d.,x%–-]+$/.test(String(r[i]))))
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...text.map(line)].join('\n')
}

/** A number rounded for a table: 3 significant digits below 100, integers above. */
export function fmt (x: number | undefined, digits = 1): string | undefined {
  if (x === undefined || !Number.isFinite(x)) return undefined
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(digits)
}

export const MB = 1e6

export interface Target {
  name: string
  /** The measured figure, formatted with its unit; undefined when not measured. */
  figure?: string
  goal: string
  met?: boolean
  /** Why it was not measured, or which configuration it was measured on. */
  note?: string
}

export function targetLine (t: Target): string {
  const status = t.figure === undefined || t.met === undefined ? 'NOT MEASURED' : t.met ? 'MET' : 'NOT MET'
  const figure = t.figure ?? 'not measured'
  const note = t.note !== undefined ? ` [${t.note}]` : ''
  return `TARGET ${t.name}: ${figure} (goal ${t.goal}) ${status}${note}`
}
