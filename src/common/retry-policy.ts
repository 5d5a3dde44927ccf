/**
 * Retry policy of grain RPC, sans-I/O: pure functions over settings, the
 * failed attempt's error, the current time and an injected random source.
 * The drivers (rpc/rpc-client.ts for calls, PubSub's redelivery through
 * pubsub/partition-policy.ts) own the clock and the timers. L0 so that the
 * cluster plane can use it without importing the front.
 *
 * One deadline covers the whole call: attempt timeouts and backoff delays
 * are cut to what is left of it, and a retry whose backoff would end at or
 * after the deadline is not started (the call fails at once with the last
 * error rather than sleeping into a certain timeout).
 *
 * Backoff is exponential with full jitter (AWS architecture blog,
 * "Exponential Backoff And Jitter"): delay = uniform(0, min(max, min·factor^(n-1))).
 */

import { GrainClusterError } from './errors.js'
import { checkRpcSettings, type RpcCallSettings } from './rpc-settings.js'

export const DEFAULT_RPC_RETRIES = 0
export const DEFAULT_RPC_MIN_DELAY_MS = 10 // 10 ms
export const DEFAULT_RPC_MAX_DELAY_MS = 1_000 // 1 s
export const DEFAULT_RPC_FACTOR = 2

/** Every setting decided; attemptTimeoutMs stays optional (none = the remaining deadline). */
export type ResolvedRpcSettings = Required<Omit<RpcCallSettings, 'attemptTimeoutMs'>> & { attemptTimeoutMs?: number }

/** Node-level defaults; timeoutMs comes from the node's askTimeoutMs. */
export function defaultRpcSettings(timeoutMs: number): ResolvedRpcSettings {
  return { timeoutMs, retries: DEFAULT_RPC_RETRIES, minDelayMs: DEFAULT_RPC_MIN_DELAY_MS, maxDelayMs: DEFAULT_RPC_MAX_DELAY_MS, factor: DEFAULT_RPC_FACTOR, jitter: true }
}

/** Layer settings, later layers winning field by field (node → kind → call). Throws ERR_CONFIG_INVALID on a bad layer. */
export function mergeRpcSettings(base: ResolvedRpcSettings, layer: RpcCallSettings | undefined, path: string): ResolvedRpcSettings {
  if (layer === undefined) return base
  const issues = checkRpcSettings(layer, path)
  if (issues.length > 0) throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid RPC settings: ${issues.join('; ')}`, { issues })
  const out: ResolvedRpcSettings = { ...base }
  for (const [k, v] of Object.entries(layer)) if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v
  if (out.minDelayMs > out.maxDelayMs) out.maxDelayMs = out.minDelayMs
  return out
}

/** True when the grain's own handler threw `e` (the worker marks it where it catches the throw). */
export function isGrainThrown(e: GrainClusterError): boolean {
  return e.details.origin === 'grain'
}

/** Backoff before retry number `retry` (1-based); `random` in [0, 1). */
export function backoffDelayMs(retry: number, s: ResolvedRpcSettings, random: () => number): number {
  const capped = Math.min(s.maxDelayMs, s.minDelayMs * s.factor ** (retry - 1))
  return s.jitter ? Math.floor(random() * capped) : capped
}

/** Timeout to give attempt that starts at `nowMs`: the remaining deadline, capped by attemptTimeoutMs; at least 1 ms. */
export function attemptBudgetMs(s: ResolvedRpcSettings, nowMs: number, deadlineMs: number): number {
  const remaining = Math.max(1, Math.ceil(deadlineMs - nowMs))
  return s.attemptTimeoutMs === undefined ? remaining : Math.min(remaining, s.attemptTimeoutMs)
}

export type RetryDecision =
  | { retry: true; delayMs: number }
  | { retry: false; why: 'grain-error' | 'not-retryable' | 'exhausted' | 'deadline' }

/**
 * After attempt `attempt` (1-based) failed with `error` at `nowMs`: retry
 * (after delayMs) or give up, and why.
 */
export function decideRetry(error: GrainClusterError, attempt: number, s: ResolvedRpcSettings, nowMs: number, deadlineMs: number, random: () => number): RetryDecision {
  // Checked before `retryable`: a handler may rethrow a retryable error of a
  // nested call, and retrying the outer call would multiply the inner ones.
  if (isGrainThrown(error)) return { retry: false, why: 'grain-error' }
  if (!error.retryable) return { retry: false, why: 'not-retryable' }
  if (attempt > s.retries) return { retry: false, why: 'exhausted' }
  const delayMs = backoffDelayMs(attempt, s, random)
  // The next attempt needs time of its own: at least 1 ms before the deadline.
  if (nowMs + delayMs + 1 > deadlineMs) return { retry: false, why: 'deadline' }
  return { retry: true, delayMs }
}
