/**
 * The main thread's grain RPC client: wraps the node's raw call (one
 * attempt: local ring, remote association or stateless pool) with the
 * per-kind/per-call timeout and retry policy, typed errors that always name
 * kind, key and method, RPC events, metrics and the alert signal.
 *
 * Settings layer node defaults < kind (defineGrain({ rpc }), as the workers
 * reported it, or the definition passed to the call) < call options. A
 * call's timeoutMs is its one deadline: every attempt and backoff fits in it.
 */

import { type ErrorDetails, GrainClusterError, toGrainClusterError } from '../common/errors.js'
import type { RpcCallSettings } from '../common/rpc-settings.js'
import type { EventStream } from '../observability/event-stream.js'
import type { RpcAlerts, RpcAlertTransition } from './rpc-alerts.js'
import { type RpcMetrics, UNKNOWN_LABEL } from './rpc-metrics.js'
import { attemptBudgetMs, decideRetry, isGrainThrown, mergeRpcSettings, type ResolvedRpcSettings } from '../common/retry-policy.js'

export interface RpcTarget {
  readonly kind: string
  readonly key: string
  readonly method: string
}

/** One attempt of a call, given the attempt's timeout (ms). */
export type RpcAttempt<R> = (timeoutMs: number) => Promise<R>

export interface RpcClientOptions {
  events: EventStream
  /** Node-level settings, fully resolved. */
  defaults: ResolvedRpcSettings
  /** A kind the workers reported, with its declared settings (read per call: workers report kinds after start). */
  kinds: (kind: string) => { readonly rpc: RpcCallSettings | undefined } | undefined
  metrics?: RpcMetrics | undefined
  alerts?: RpcAlerts | undefined
  /** Monotonic ms. Default performance.now. */
  now?: () => number
  /** In [0, 1), for jitter. Default Math.random. */
  random?: () => number
  sleep?: (ms: number) => Promise<void>
}

const defaultSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export class RpcClient {
  readonly #o: RpcClientOptions
  readonly #now: () => number
  readonly #random: () => number
  readonly #sleep: (ms: number) => Promise<void>
  /** Node defaults merged with each kind's declared settings (kind settings are fixed once reported). */
  readonly #byKind = new Map<string, ResolvedRpcSettings>()
  #ticker: ReturnType<typeof setInterval> | undefined

  constructor(o: RpcClientOptions) {
    this.#o = o
    this.#now = o.now ?? (() => performance.now())
    this.#random = o.random ?? Math.random
    this.#sleep = o.sleep ?? defaultSleep
    if (o.alerts !== undefined) {
      // Slides the windows when traffic stops, so a signal can clear without calls.
      this.#ticker = setInterval(() => this.#alertTransitions(o.alerts!.tick(this.#now())), Math.max(50, o.alerts.windowMs / 10))
      this.#ticker.unref()
    }
  }

  /** Settings a call of `kind` gets with `call` options (and the definition's own, for typed calls). Throws ERR_CONFIG_INVALID. */
  settingsFor(kind: string, call?: RpcCallSettings, declared?: RpcCallSettings): ResolvedRpcSettings {
    let s = this.#byKind.get(kind)
    if (s === undefined) {
      const reported = this.#o.kinds(kind)
      s = mergeRpcSettings(this.#o.defaults, reported === undefined ? declared : reported.rpc, `${kind}.rpc`)
      // Only reported kinds are cached, so made-up names cannot grow the map.
      if (reported !== undefined) this.#byKind.set(kind, s)
    }
    return call === undefined ? s : mergeRpcSettings(s, call, 'call options')
  }

  /** Run `attempt` under the policy of `settings`; rejects with a GrainClusterError naming kind, key and method. */
  async call<R>(t: RpcTarget, s: ResolvedRpcSettings, attempt: RpcAttempt<R>): Promise<R> {
    const metrics = this.#o.metrics
    const series = metrics?.series(t.kind, t.method)
    if (series !== undefined) metrics!.started(series)
    const start = this.#now()
    const deadline = start + s.timeoutMs
    const attempts = s.retries + 1
    for (let n = 1; ; n++) {
      // The first attempt takes timeoutMs as is: equal to the node default, it rides the host's shared sweep, not a timer per call.
      const budget = n === 1 && s.attemptTimeoutMs === undefined ? s.timeoutMs : attemptBudgetMs(s, this.#now(), deadline)
      let err: GrainClusterError
      try {
        const v = await attempt(budget)
        const end = this.#now()
        if (series !== undefined) metrics!.succeeded(series, (end - start) / 1000)
        this.#record(t.kind, end, end - start, true)
        return v
      } catch (e) {
        err = toGrainClusterError(e)
      }
      const now = this.#now()
      const d = decideRetry(err, n, s, now, deadline, this.#random)
      if (!d.retry) {
        const final = annotate(err, t, n, attempts, budget, s.timeoutMs)
        const outcome = final.code === 'ERR_GRAIN_TIMEOUT' && !isGrainThrown(final) ? 'timeout' : 'error'
        if (series !== undefined) metrics!.failed(series, final.code, outcome, (now - start) / 1000)
        this.#o.events.publish({ type: 'rpc.failed', kind: t.kind, key: t.key, method: t.method, code: final.code, reason: final.reason, attempts: n, durationMs: now - start, final: d.why })
        this.#record(t.kind, now, now - start, false)
        throw final
      }
      if (series !== undefined) metrics!.retried(series)
      this.#o.events.publish({ type: 'rpc.retried', kind: t.kind, key: t.key, method: t.method, attempt: n, delayMs: d.delayMs, code: err.code, reason: err.reason })
      if (d.delayMs > 0) await this.#sleep(d.delayMs)
    }
  }

  #record(kind: string, now: number, ms: number, ok: boolean): void {
    const a = this.#o.alerts
    if (a === undefined) return
    // Made-up kind names share one window, so callers cannot grow the alert state (or raise alerts for kinds that do not exist).
    const t = a.record(this.#o.kinds(kind) === undefined ? UNKNOWN_LABEL : kind, now, ms, ok)
    if (t !== undefined) this.#alertTransitions(t)
  }

  #alertTransitions(ts: RpcAlertTransition[]): void {
    for (const t of ts) {
      this.#o.metrics?.alert(t.kind, t.signal, t.active)
      const { kind, signal, observed, threshold, calls, windowMs } = t
      this.#o.events.publish({ type: t.active ? 'rpc.alert' : 'rpc.alert-cleared', kind, signal, observed, threshold, calls, windowMs })
    }
  }

  close(): void {
    if (this.#ticker !== undefined) clearInterval(this.#ticker)
    this.#ticker = undefined
  }
}

/** The final error of a call: kind/key/method (filled in when missing), attempts, and a timeout reason that names the target and the attempt. */
function annotate(err: GrainClusterError, t: RpcTarget, attempt: number, attempts: number, budgetMs: number, timeoutMs: number): GrainClusterError {
  let reason = err.reason
  if (err.code === 'ERR_GRAIN_TIMEOUT' && !isGrainThrown(err)) {
    const scope = budgetMs < timeoutMs ? `; call deadline ${timeoutMs} ms` : ''
    reason = `no reply from ${t.kind}/${t.key}.${t.method} within ${budgetMs} ms (attempt ${attempt} of ${attempts}${scope})`
  }
  const d = err.details
  const details: ErrorDetails = { kind: t.kind, key: t.key, method: t.method, ...d, attempts: attempt }
  // A grain rethrowing a nested call's error keeps naming the grain that failed; `via` names the call that saw it.
  if (d.kind !== undefined && (d.kind !== t.kind || d.key !== t.key || d.method !== t.method)) details.via = `${t.kind}/${t.key}.${t.method}`
  return new GrainClusterError(err.code, reason, details, { cause: err })
}
