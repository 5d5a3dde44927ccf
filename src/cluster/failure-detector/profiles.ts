/**
 * Failure-detector settings and the two documented profiles. Sans-I/O.
 *
 * Detection arithmetic (phi-accrual.ts): with a clean heartbeat history the
 * mean inter-arrival time is the heartbeat interval H and the measured
 * standard deviation is below the 100 ms clamp, so φ reaches the threshold 8
 * when the silence since the last heartbeat received is
 *
 *     T = H + acceptableHeartbeatPauseMs + y₈·σ,   y₈ = 5.2260, σ = max(std, minStdDeviationMs)
 *
 * (y₈ solves softplus(y(1.5976 + 0.070566y²)) = 8·ln 10.) A node killed at a
 * random moment of its heartbeat cycle last reached us between 0 and H before
 * it died, and the driver looks at φ every `checkIntervalMs` (C), so the
 * time from kill to Unreachable lies in [T − H, T + C]. Targets (measured
 * end-to-end): test ≤ 3.5 s, prod ≤ 6 s, never before 1.5 s; a 1 s SIGSTOP
 * (silence ≤ H + 1 s) must stay below the threshold.
 *
 * | profile | H    | pause | σ   | T       | kill → Unreachable | φ at H + 1 s + 250 ms |
 * |---------|------|-------|-----|---------|--------------------|-----------------------|
 * | test    | 500  | 1500  | 100 | 2522.6  | 2022.6 … 2622.6    | 0.0026                |
 * | prod    | 1000 | 2000  | 100 | 3522.6  | 2522.6 … 3772.6    | ≈ 0 (< 1e-20)         |
 *
 * Head-room: the upper bound still holds if jitter inflates σ to 267 ms
 * (test) or 526 ms (prod); the seed deviation of a peer's first heartbeats
 * (H/4 = 125/250 ms, T = 2653/4306 ms) is inside that. profiles.test.ts recomputes every number here
 * by driving a real detector.
 *
 * Pekko's cluster defaults (heartbeat 1 s, threshold 8, max-sample-size
 * 1000, min-std-deviation 100 ms, acceptable-heartbeat-pause 3 s) give
 * T = 4.52 s; `prod` keeps all of them except a 2 s pause (T = 3.52 s): a
 * killed node's keys must answer again on the survivors within 5 s (issue
 * 5), and detection is most of that. It still tolerates 3 s of silence from
 * a live peer (a 2 s GC or event-loop stall on top of a full heartbeat
 * interval) without suspicion; raise acceptableHeartbeatPauseMs where
 * longer stalls are normal (the serving lease follows it).
 */

/** Every tunable of failure detection; one object per node, same on every node. */
export interface FailureDetectorSettings {
  /** How often this node sends a heartbeat to each monitored peer, ms. */
  readonly heartbeatIntervalMs: number
  /** How often the driver evaluates φ and ticks local health, ms (the detection granularity). */
  readonly checkIntervalMs: number
  /** φ at or above which a peer becomes Unreachable (Pekko `threshold`). */
  readonly threshold: number
  /** Inter-arrival samples kept per peer (Pekko `max-sample-size`). */
  readonly maxSampleSize: number
  /** Lower clamp on the inter-arrival standard deviation, ms (Pekko `min-std-deviation`). */
  readonly minStdDeviationMs: number
  /** Tolerated lost/late heartbeats, added to the mean, ms (Pekko `acceptable-heartbeat-pause`). */
  readonly acceptableHeartbeatPauseMs: number
  /** Seeds a new peer's history (mean; deviation a quarter of it), ms. Normally = heartbeatIntervalMs. */
  readonly firstHeartbeatEstimateMs: number
  /** Local timer lag above which this node counts itself as having been paused, ms (local-health.ts). */
  readonly localPauseThresholdMs: number
  /** After a local pause: how long accusations and new samples are suppressed, ms. */
  readonly localPauseGraceMs: number
  /**
   * Stable-after window: a member must stay Unreachable this long, without
   * becoming Reachable in between, before it may be downed, ms. Unreachable
   * is reversible and cheap; Down is final, so it waits out transient
   * partitions and pauses (Pekko split-brain-resolver `stable-after`, 20 s).
   */
  readonly downAfterUnreachableMs: number
}

export type FailureDetectorProfileName = 'test' | 'prod'

/** The two documented profiles; see the header for the derivation. */
export const FAILURE_DETECTOR_PROFILES: { readonly [P in FailureDetectorProfileName]: FailureDetectorSettings } = Object.freeze({
  /** Fast: kill → Unreachable in 2.0–2.6 s. For tests and local clusters, not for loaded networks. */
  test: Object.freeze({
    heartbeatIntervalMs: 500,
    checkIntervalMs: 100,
    threshold: 8,
    maxSampleSize: 200, // 100 s of history: adapts quickly to a new environment
    minStdDeviationMs: 100,
    acceptableHeartbeatPauseMs: 1_500, // 3 heartbeats
    firstHeartbeatEstimateMs: 500,
    localPauseThresholdMs: 250,
    localPauseGraceMs: 1_000, // 2 heartbeats: buffered heartbeats drain, the next regular one arrives
    downAfterUnreachableMs: 5_000,
  }),
  /** Default: kill → Unreachable in 2.5–3.8 s, tolerates 3 s of silence. */
  prod: Object.freeze({
    heartbeatIntervalMs: 1_000,
    checkIntervalMs: 250,
    threshold: 8,
    maxSampleSize: 1_000,
    minStdDeviationMs: 100,
    acceptableHeartbeatPauseMs: 2_000,
    firstHeartbeatEstimateMs: 1_000,
    localPauseThresholdMs: 250,
    localPauseGraceMs: 2_000, // 2 heartbeats
    downAfterUnreachableMs: 20_000, // Pekko SBR stable-after default
  }),
})

export const DEFAULT_FAILURE_DETECTOR_PROFILE: FailureDetectorProfileName = 'prod'

/** A profile name plus any overrides of its fields. */
export type FailureDetectorInput = { readonly profile?: FailureDetectorProfileName } & { readonly [K in keyof FailureDetectorSettings]?: FailureDetectorSettings[K] }

type Rule = 'positive' | 'positive-integer' | 'non-negative'

const RULES: { readonly [K in keyof FailureDetectorSettings]: Rule } = {
  heartbeatIntervalMs: 'positive',
  checkIntervalMs: 'positive',
  threshold: 'positive',
  maxSampleSize: 'positive-integer',
  minStdDeviationMs: 'positive',
  acceptableHeartbeatPauseMs: 'non-negative',
  firstHeartbeatEstimateMs: 'positive',
  localPauseThresholdMs: 'positive',
  localPauseGraceMs: 'non-negative',
  downAfterUnreachableMs: 'non-negative',
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined ? String(v) : typeof v
}

function isRuleKey(k: string): k is keyof FailureDetectorSettings {
  return Object.hasOwn(RULES, k)
}

/**
 * Checks a complete settings object (e.g. a resolved profile with
 * overrides). Returns every problem, one `path.field: message` string each,
 * e.g. `failureDetector.threshold must be > 0 (got -1)`; empty when valid.
 */
export function validateFailureDetectorSettings(input: unknown, path = 'failureDetector'): string[] {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return [`${path} must be an object (got ${show(input)})`]
  const issues: string[] = []
  const record = input as Record<string, unknown>
  for (const key of Object.keys(record)) {
    if (!isRuleKey(key)) issues.push(`${path}.${key} is not a failure-detector setting`)
  }
  for (const key of Object.keys(RULES) as (keyof FailureDetectorSettings)[]) {
    const v = record[key]
    const at = `${path}.${key}`
    if (v === undefined) {
      issues.push(`${at} is required`)
      continue
    }
    const rule = RULES[key]
    const finite = typeof v === 'number' && Number.isFinite(v)
    switch (rule) {
      case 'positive':
        if (!finite || v <= 0) issues.push(`${at} must be > 0 (got ${show(v)})`)
        break
      case 'positive-integer':
        if (!finite || !Number.isInteger(v) || v < 1) issues.push(`${at} must be a positive integer (got ${show(v)})`)
        break
      case 'non-negative':
        if (!finite || v < 0) issues.push(`${at} must be >= 0 (got ${show(v)})`)
        break
    }
  }
  return issues
}

/**
 * Merges a profile (default `prod`) with overrides and validates the
 * result. The settings are frozen; `issues` is empty when they are usable.
 */
export function resolveFailureDetectorSettings(input: FailureDetectorInput = {}, path = 'failureDetector'): { settings: FailureDetectorSettings; issues: string[] } {
  const issues: string[] = []
  const name = input.profile ?? DEFAULT_FAILURE_DETECTOR_PROFILE
  let base = FAILURE_DETECTOR_PROFILES[name] as FailureDetectorSettings | undefined
  if (base === undefined) {
    issues.push(`${path}.profile must be one of ${Object.keys(FAILURE_DETECTOR_PROFILES).map((p) => `'${p}'`).join(', ')} (got ${show(name)})`)
    base = FAILURE_DETECTOR_PROFILES[DEFAULT_FAILURE_DETECTOR_PROFILE]
  }
  const merged: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(input)) {
    if (k !== 'profile' && v !== undefined) merged[k] = v
  }
  issues.push(...validateFailureDetectorSettings(merged, path))
  return { settings: Object.freeze(merged) as unknown as FailureDetectorSettings, issues }
}
