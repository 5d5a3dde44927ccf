/**
 * Result shapes shared by every scope, and how they are printed. JSON keeps
 * raw numbers; the console tables show the same rows with rounded values.
 *
 * Every ratio is a speed-up: > 1 means better than the baseline, for
 * throughput (candidate / baseline) and latency (baseline / candidate) alike.
 */

export const SCOPES = ['ring', 'envelope', 'codec', 'e2e', 'activation', 'gossip', 'membership', 'remote', 'placement', 'http'] as const
/** Scopes that only run when named (--scope X): too slow for `all` and the smoke test. */
export const ON_DEMAND_SCOPES = ['failover', 'flood', 'pubsub'] as const
export type ScopeName = (typeof SCOPES)[number] | (typeof ON_DEMAND_SCOPES)[number]

export type Cell = string | number | boolean | null
export type Row = Record<string, Cell>

export interface TargetCheck {
  /** What is checked, e.g. 'ring batched vs postMessage'. */
  name: string
  /** The target as written in the issue, e.g. '>= 20x'. */
  target: string
  actual: number
  unit: string
  met: boolean
}

export interface ScopeResult {
  scope: ScopeName
  title: string
  /** How it was timed: tinybench or hand timing, what one op is. */
  method: string
  /** Name of the baseline row the ratios refer to. */
  baseline: string
  params: Record<string, Cell>
  rows: Row[]
  targets: TargetCheck[]
  notes: string[]
  startedAt: string
  durationMs: number
}

export interface ScopeFailure {
  scope: ScopeName
  error: string
  startedAt: string
  durationMs: number
}

/** What a scope gets from the runner. */
export interface BenchOptions {
  quick: boolean
  /** spinMicros for GrainNode (e2e); 0 = the runtime's default. */
  spinMicros: number
  /** Progress lines (stderr in --json mode). */
  log: (line: string) => void
}

export interface ScopeModule {
  run(o: BenchOptions): Promise<ScopeResult>
}

/** Throughput/latency ratio helpers: both return a speed-up (> 1 is better). */
export const speedup = (candidate: number, baseline: number): number => candidate / baseline
export const latencySpeedup = (candidate: number, baseline: number): number => baseline / candidate

export function check(name: string, target: string, actual: number, unit: string, met: boolean): TargetCheck {
  return { name, target, actual, unit, met }
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v)
  const a = Math.abs(v)
  if (Number.isInteger(v) || a >= 1000) return Math.round(v).toLocaleString('en-US')
  if (a >= 100) return v.toFixed(1)
  if (a >= 10) return v.toFixed(2)
  return v.toFixed(3)
}

function formatCell(key: string, v: Cell): Cell {
  if (typeof v !== 'number') return v
  if (/ratio|speedup|×/i.test(key)) return `${v >= 100 ? v.toFixed(0) : v.toFixed(2)}×`
  return formatNumber(v)
}

export function displayRows(rows: readonly Row[]): Row[] {
  return rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, formatCell(k, v)])))
}

export function printScope(out: Console, r: ScopeResult): void {
  out.log(`\n=== ${r.scope}: ${r.title} (${(r.durationMs / 1000).toFixed(1)} s)`)
  out.log(`method:   ${r.method}`)
  out.log(`baseline: ${r.baseline}`)
  const params = Object.entries(r.params)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ')
  if (params !== '') out.log(`params:   ${params}`)
  out.table(displayRows(r.rows))
  if (r.targets.length > 0) {
    out.table(
      r.targets.map((t) => ({
        target: t.name,
        wanted: t.target,
        actual: `${formatNumber(t.actual)} ${t.unit}`.trim(),
        met: t.met ? 'yes' : 'NO',
      })),
    )
  }
  for (const n of r.notes) out.log(`note: ${n}`)
}
