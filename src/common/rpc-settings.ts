/**
 * Per-call RPC settings (timeout and retry policy), shared by the three
 * places that declare them: a grain kind (`defineGrain({ rpc })`, checked on
 * the worker that loads it), the node (`GrainNode.start({ rpc: { defaults } })`)
 * and a single call (`CallOptions`). L0 so that grains/ can validate without
 * reaching up into rpc/; the policy itself is common/retry-policy.ts.
 */

export interface RpcCallSettings {
  /**
   * Deadline of the whole call in ms: every attempt and every backoff delay
   * falls inside it; no retry starts that could not finish before it.
   * Default: the node's askTimeoutMs (10 s).
   */
  timeoutMs?: number
  /**
   * Cap on one attempt (ms), so a stalled attempt can give way to a retry
   * within the deadline. Default: none (an attempt may use the whole
   * remaining deadline, so a timeout is then never retried).
   */
  attemptTimeoutMs?: number
  /**
   * Extra attempts after the first, for retryable errors only (never for an
   * error the grain's handler threw). Default 0: a retry after
   * ERR_WORKER_CRASHED or ERR_GRAIN_TIMEOUT may run a handler twice, so
   * at-least-once is opted into per kind, node or call.
   */
  retries?: number
  /** Backoff before retry 1 (ms); doubles (factor) up to maxDelayMs. Default 10. */
  minDelayMs?: number
  /** Cap on one backoff delay (ms). Default 1 000. */
  maxDelayMs?: number
  /** Growth of the backoff per retry. Default 2. */
  factor?: number
  /** Full jitter: wait uniform(0, backoff) instead of backoff. Default true. */
  jitter?: boolean
}

const INTEGER_FIELDS = ['timeoutMs', 'attemptTimeoutMs', 'retries', 'minDelayMs', 'maxDelayMs'] as const
const MAX_MS = 24 * 3_600_000 // 24 h
const MAX_RETRIES = 100

/** Problems with `u` as RpcCallSettings, each as `path.field message (got x)`; empty when valid. */
export function checkRpcSettings(u: unknown, path: string): string[] {
  if (u === undefined) return []
  if (typeof u !== 'object' || u === null || Array.isArray(u)) return [`${path} must be an object (got ${JSON.stringify(u)})`]
  const issues: string[] = []
  const o = u as Record<string, unknown>
  for (const k of Object.keys(o)) {
    if (!(INTEGER_FIELDS as readonly string[]).includes(k) && k !== 'factor' && k !== 'jitter') issues.push(`${path}.${k} is not a setting (known: ${[...INTEGER_FIELDS, 'factor', 'jitter'].join(', ')})`)
  }
  for (const k of INTEGER_FIELDS) {
    const v = o[k]
    if (v === undefined) continue
    const min = k === 'retries' || k === 'minDelayMs' || k === 'maxDelayMs' ? 0 : 1
    const max = k === 'retries' ? MAX_RETRIES : MAX_MS
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) issues.push(`${path}.${k} must be an integer in [${min}, ${max}] (got ${show(v)})`)
  }
  if (o.factor !== undefined && (typeof o.factor !== 'number' || !Number.isFinite(o.factor) || o.factor < 1 || o.factor > 100)) {
    issues.push(`${path}.factor must be a number in [1, 100] (got ${show(o.factor)})`)
  }
  if (o.jitter !== undefined && typeof o.jitter !== 'boolean') issues.push(`${path}.jitter must be true or false (got ${show(o.jitter)})`)
  if (typeof o.minDelayMs === 'number' && typeof o.maxDelayMs === 'number' && o.minDelayMs > o.maxDelayMs) {
    issues.push(`${path}.minDelayMs (${o.minDelayMs}) must be <= maxDelayMs (${o.maxDelayMs})`)
  }
  return issues
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? String(v)
}
