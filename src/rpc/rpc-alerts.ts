/**
 * RPC alert signal (spec 10.2), sans-I/O: callers pass the time in.
 *
 * Per kind, a sliding window of `windowMs` split into SLOTS slots holds the
 * calls, the failures, and the calls slower than `latencyP99Ms`. Two signals:
 *
 *   latency     p99 > latencyP99Ms  ⇔  more than 1% of the window's calls took
 *               longer than latencyP99Ms (exact, no latency samples kept)
 *   error-rate  failures / calls > errorRate
 *
 * A signal raises once when crossed with at least `minCalls` calls in the
 * window, and clears once when a window of at least minCalls calls is back
 * under the threshold, or when the window holds no calls at all (traffic
 * stopped; call tick() for that). Memory per kind is O(SLOTS).
 */

export interface RpcAlertSettings {
  /** Sliding window (ms). Default 60 000. */
  windowMs?: number
  /** Raise 'latency' when the window's p99 exceeds this (ms). Default 1 000. */
  latencyP99Ms?: number
  /** Raise 'error-rate' when failures/calls in the window exceed this (0..1). Default 0.05. */
  errorRate?: number
  /** No signal is raised on fewer calls than this in the window. Default 20. */
  minCalls?: number
}

export type RpcAlertSignal = 'latency' | 'error-rate'

export interface RpcAlertTransition {
  kind: string
  signal: RpcAlertSignal
  active: boolean
  /** The window's value of the signal: the share of calls slower than the threshold (latency) or failing (error-rate). */
  observed: number
  /** The threshold crossed: latencyP99Ms (ms) or errorRate. */
  threshold: number
  calls: number
  windowMs: number
}

export const DEFAULT_ALERT_WINDOW_MS = 60_000 // 1 min
export const DEFAULT_ALERT_LATENCY_P99_MS = 1_000 // 1 s
export const DEFAULT_ALERT_ERROR_RATE = 0.05
export const DEFAULT_ALERT_MIN_CALLS = 20
const SLOTS = 10
const P99_TAIL = 0.01

export function checkAlertSettings(u: unknown, path: string): string[] {
  if (u === undefined || u === false) return []
  if (typeof u !== 'object' || u === null || Array.isArray(u)) return [`${path} must be an object or false (got ${JSON.stringify(u)})`]
  const o = u as Record<string, unknown>
  const issues: string[] = []
  for (const k of Object.keys(o)) if (!['windowMs', 'latencyP99Ms', 'errorRate', 'minCalls'].includes(k)) issues.push(`${path}.${k} is not a setting (known: windowMs, latencyP99Ms, errorRate, minCalls)`)
  const int = (k: string, min: number, max: number): void => {
    const v = o[k]
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)) issues.push(`${path}.${k} must be an integer in [${min}, ${max}] (got ${show(v)})`)
  }
  int('windowMs', SLOTS, 24 * 3_600_000)
  int('latencyP99Ms', 1, 24 * 3_600_000)
  int('minCalls', 1, 1_000_000)
  if (o.errorRate !== undefined && (typeof o.errorRate !== 'number' || !(o.errorRate >= 0 && o.errorRate < 1))) issues.push(`${path}.errorRate must be a number in [0, 1) (got ${show(o.errorRate)})`)
  return issues
}

class KindWindow {
  readonly calls = new Array<number>(SLOTS).fill(0)
  readonly errors = new Array<number>(SLOTS).fill(0)
  readonly slow = new Array<number>(SLOTS).fill(0)
  sumCalls = 0
  sumErrors = 0
  sumSlow = 0
  /** Index of the newest slot in absolute slot numbers (time / slotMs). */
  head = -1
  latencyActive = false
  errorActive = false

  /** Expire the slots that left the window by `slotNo`. */
  advance(slotNo: number): void {
    if (this.head < 0 || slotNo - this.head >= SLOTS) {
      this.calls.fill(0)
      this.errors.fill(0)
      this.slow.fill(0)
      this.sumCalls = this.sumErrors = this.sumSlow = 0
      this.head = slotNo
      return
    }
    // A clock that steps back keeps counting into the newest slot.
    while (this.head < slotNo) {
      this.head++
      const i = this.head % SLOTS
      this.sumCalls -= this.calls[i]!
      this.sumErrors -= this.errors[i]!
      this.sumSlow -= this.slow[i]!
      this.calls[i] = this.errors[i] = this.slow[i] = 0
    }
  }
}

export class RpcAlerts {
  readonly windowMs: number
  readonly latencyP99Ms: number
  readonly errorRate: number
  readonly minCalls: number
  readonly #slotMs: number
  readonly #kinds = new Map<string, KindWindow>()

  constructor(s: RpcAlertSettings = {}) {
    this.windowMs = s.windowMs ?? DEFAULT_ALERT_WINDOW_MS
    this.latencyP99Ms = s.latencyP99Ms ?? DEFAULT_ALERT_LATENCY_P99_MS
    this.errorRate = s.errorRate ?? DEFAULT_ALERT_ERROR_RATE
    this.minCalls = s.minCalls ?? DEFAULT_ALERT_MIN_CALLS
    this.#slotMs = this.windowMs / SLOTS
  }

  /** Record one finished call of `kind` at `nowMs`; returns the signals that changed (usually none). */
  record(kind: string, nowMs: number, durationMs: number, ok: boolean): RpcAlertTransition[] | undefined {
    let w = this.#kinds.get(kind)
    if (w === undefined) this.#kinds.set(kind, (w = new KindWindow()))
    w.advance(Math.floor(nowMs / this.#slotMs))
    const i = w.head % SLOTS
    w.calls[i]!++
    w.sumCalls++
    if (!ok) {
      w.errors[i]!++
      w.sumErrors++
    }
    if (durationMs > this.latencyP99Ms) {
      w.slow[i]!++
      w.sumSlow++
    }
    return this.#evaluate(kind, w)
  }

  /** Slide every window to `nowMs` (clears signals once traffic stops). */
  tick(nowMs: number): RpcAlertTransition[] {
    const out: RpcAlertTransition[] = []
    const slotNo = Math.floor(nowMs / this.#slotMs)
    for (const [kind, w] of this.#kinds) {
      w.advance(slotNo)
      const t = this.#evaluate(kind, w)
      if (t !== undefined) out.push(...t)
    }
    return out
  }

  /** Signals raised now, for diagnostics. */
  active(): { kind: string; signal: RpcAlertSignal }[] {
    const out: { kind: string; signal: RpcAlertSignal }[] = []
    for (const [kind, w] of this.#kinds) {
      if (w.latencyActive) out.push({ kind, signal: 'latency' })
      if (w.errorActive) out.push({ kind, signal: 'error-rate' })
    }
    return out
  }

  #evaluate(kind: string, w: KindWindow): RpcAlertTransition[] | undefined {
    const calls = w.sumCalls
    const enough = calls >= this.minCalls
    const slowShare = calls === 0 ? 0 : w.sumSlow / calls
    const errorShare = calls === 0 ? 0 : w.sumErrors / calls
    let out: RpcAlertTransition[] | undefined
    const latencyOver = slowShare > P99_TAIL
    if (w.latencyActive ? calls === 0 || (enough && !latencyOver) : enough && latencyOver) {
      w.latencyActive = !w.latencyActive
      ;(out ??= []).push({ kind, signal: 'latency', active: w.latencyActive, observed: slowShare, threshold: this.latencyP99Ms, calls, windowMs: this.windowMs })
    }
    const errorsOver = errorShare > this.errorRate
    if (w.errorActive ? calls === 0 || (enough && !errorsOver) : enough && errorsOver) {
      w.errorActive = !w.errorActive
      ;(out ??= []).push({ kind, signal: 'error-rate', active: w.errorActive, observed: errorShare, threshold: this.errorRate, calls, windowMs: this.windowMs })
    }
    return out
  }
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
}
