/**
 * Observability settings (spec 10.5: sampling interval, metric kinds,
 * export destination), from GrainNodeOptions.metrics or the config file's
 * `metrics` section:
 *
 *   - whether metrics are recorded at all (`false`: events only, and the
 *     diagnostic of spec 10.4);
 *   - `processMetrics`: also Node.js process metrics (prom-client's default
 *     set under their standard names: CPU, memory, event-loop delay, GC,
 *     handles), off by default;
 *   - `workerStatsIntervalMs`: how often each grain worker reports its
 *     grains' own calls and waiting calls to the main thread's registry
 *     (the sampling interval of the worker-side series);
 *   - `push`: a Prometheus Pushgateway to push the registry to every
 *     `intervalMs`, besides serving it on /metrics (for nodes a Prometheus
 *     server cannot scrape).
 */

import { hostname } from 'node:os'
import { CALL_STATS_INTERVAL_MS } from '../runtime/call-stats.js'

export interface MetricsPushOptions {
  /** Pushgateway base URL, http(s). */
  url: string
  /** ms between pushes. Default 15 000. */
  intervalMs?: number
  /** The `job` grouping label. Default 'graincluster'. */
  job?: string
}

export interface MetricsOptions {
  /** Default true. */
  enabled?: boolean
  /** Node.js process metrics (process_*, nodejs_*). Default false. */
  processMetrics?: boolean
  /** ms between worker-side call-stat reports. Default 1 000. */
  workerStatsIntervalMs?: number
  push?: MetricsPushOptions
}

export interface ResolvedMetricsOptions {
  enabled: boolean
  processMetrics: boolean
  workerStatsIntervalMs: number
  push: Required<MetricsPushOptions> | undefined
}

/** The workers' own default (runtime/call-stats.ts). */
export const DEFAULT_WORKER_STATS_INTERVAL_MS = CALL_STATS_INTERVAL_MS
export const DEFAULT_PUSH_INTERVAL_MS = 15_000
export const DEFAULT_PUSH_JOB = 'graincluster'

const JOB_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/

function intIn(issues: string[], name: string, v: unknown, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) issues.push(`${name} must be an integer in [${min}, ${max}] (got ${JSON.stringify(v)})`)
  return v as number
}

/** `metrics` as GrainNodeOptions takes it (a boolean, or the settings); problems go to `issues`. */
export function resolveMetricsOptions(v: boolean | MetricsOptions | undefined, issues: string[]): ResolvedMetricsOptions {
  if (v === undefined || typeof v === 'boolean') return { enabled: v ?? true, processMetrics: false, workerStatsIntervalMs: DEFAULT_WORKER_STATS_INTERVAL_MS, push: undefined }
  if (typeof v !== 'object' || v === null) {
    issues.push(`metrics must be true, false or an object (got ${JSON.stringify(v)})`)
    return resolveMetricsOptions(undefined, issues)
  }
  if (v.enabled !== undefined && typeof v.enabled !== 'boolean') issues.push(`metrics.enabled must be true or false (got ${JSON.stringify(v.enabled)})`)
  if (v.processMetrics !== undefined && typeof v.processMetrics !== 'boolean') issues.push(`metrics.processMetrics must be true or false (got ${JSON.stringify(v.processMetrics)})`)
  const workerStatsIntervalMs = intIn(issues, 'metrics.workerStatsIntervalMs', v.workerStatsIntervalMs, DEFAULT_WORKER_STATS_INTERVAL_MS, 100, 600_000)
  let push: Required<MetricsPushOptions> | undefined
  if (v.push !== undefined) {
    const p = v.push
    let urlOk = false
    try {
      const u = new URL(p.url)
      urlOk = u.protocol === 'http:' || u.protocol === 'https:'
    } catch {
      urlOk = false
    }
    if (!urlOk) issues.push(`metrics.push.url must be an http(s) URL (got ${JSON.stringify(p.url)})`)
    const job = p.job ?? DEFAULT_PUSH_JOB
    if (typeof job !== 'string' || !JOB_PATTERN.test(job)) issues.push(`metrics.push.job must match ${JOB_PATTERN} (got ${JSON.stringify(p.job)})`)
    push = { url: p.url, job, intervalMs: intIn(issues, 'metrics.push.intervalMs', p.intervalMs, DEFAULT_PUSH_INTERVAL_MS, 100, 3_600_000) }
  }
  return { enabled: v.enabled !== false, processMetrics: v.processMetrics === true, workerStatsIntervalMs, push }
}

/** The `instance` grouping label of a node's pushes: its cluster authority, else host and process. */
export function pushInstance(authority: string | undefined): string {
  return authority ?? `${hostname()}:${process.pid}`
}
