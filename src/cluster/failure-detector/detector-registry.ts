/**
 * One phi-accrual detector per monitored member, and the reachability
 * verdicts derived from them. Sans-I/O: the driver passes monotonic time in
 * and acts on the transitions that come out.
 *
 * Detection is not decision:
 *
 * ```
 *            φ ≥ threshold (check)                     unreachable for ≥ downAfterUnreachableMs
 * Reachable ───────────────────────► Unreachable ─────────────────────────────────────────► down-eligible
 *     ▲                                   │                      (membership decides; Down/Removed is final)
 *     └───────────────────────────────────┘
 *       a new heartbeat, then φ < threshold (check)
 * ```
 *
 * - Unreachable is reversible: heartbeats resuming make the member Reachable
 *   again and clear its Unreachable-since time.
 * - Down/Removed is final and is not decided here; `downEligible` lists the
 *   members that stayed Unreachable for the whole stable-after window, for
 *   the membership/downing logic to act on.
 * - A local pause (local-health.ts) is not the peers' fault: `onLocalPause`
 *   (or `check(nowMs, verdict)`) forgives the blind time, retracts samples
 *   taken inside it and suppresses accusations for a grace window.
 *
 * Typical driver, every `checkIntervalMs`:
 *
 * ```ts
 * const verdict = localHealth.tick(now, settings.checkIntervalMs) // first
 * const { unreachable, reachable } = registry.check(now, verdict)  // then
 * ```
 */

import type { LocalHealthVerdict } from './local-health.js'
import { PhiAccrualDetector } from './phi-accrual.js'
import type { HeartbeatOutcome, PhiAccrualOptions } from './phi-accrual.js'

/** What the registry needs; a `FailureDetectorSettings` (profiles.ts) fits. */
export interface FailureDetectorRegistryOptions extends PhiAccrualOptions {
  /** Default suppression window after a local pause, ms. */
  readonly localPauseGraceMs: number
  /** Stable-after window before an Unreachable member is down-eligible, ms. */
  readonly downAfterUnreachableMs: number
}

export type Reachability = 'reachable' | 'unreachable'

/** Transitions produced by one `check`, in registration order. */
export interface ReachabilityChanges {
  /** Reachable → Unreachable. */
  readonly unreachable: string[]
  /** Unreachable → Reachable. */
  readonly reachable: string[]
}

interface Entry {
  readonly detector: PhiAccrualDetector
  reachability: Reachability
  unreachableSinceMs: number | undefined
  heartbeatSinceUnreachable: boolean
  /** Created by monitor(): its timestamp is a stand-in, so the next heartbeat adds no interval sample. */
  awaitingFirstHeartbeat: boolean
}

/** Failure detectors keyed by member id (e.g. `authority#nodeId`). */
export class FailureDetectorRegistry {
  readonly options: FailureDetectorRegistryOptions
  readonly #entries = new Map<string, Entry>()
  #suppressedUntilMs = -Infinity

  constructor(options: FailureDetectorRegistryOptions) {
    this.options = options
  }

  /**
   * Records a heartbeat from `id`, creating its detector on the first one.
   * Inside a post-pause grace window only the timestamp is updated (no
   * interval sample): buffered heartbeats arrive in a burst.
   */
  heartbeat(id: string, nowMs: number): HeartbeatOutcome {
    const entry = this.#entryOf(id)
    // The interval since monitor()'s stand-in is a request round trip, not a heartbeat interval.
    const sample = !this.isSuppressed(nowMs) && !entry.awaitingFirstHeartbeat
    entry.awaitingFirstHeartbeat = false
    const outcome = entry.detector.heartbeat(nowMs, sample)
    if (entry.reachability === 'unreachable') entry.heartbeatSinceUnreachable = true
    return outcome
  }

  /**
   * Starts monitoring `id` as if it had sent a heartbeat at `nowMs`, so a
   * member that never sends one still becomes Unreachable (Pekko's
   * `expected-response-after` / triggerFirstHeartbeat). That stand-in is not
   * an arrival: the interval from it to the first real heartbeat (typically
   * one request round trip) is not sampled. No-op if already monitored;
   * returns whether monitoring started.
   */
  monitor(id: string, nowMs: number): boolean {
    if (this.#entries.has(id)) return false
    const entry = this.#entryOf(id)
    entry.detector.heartbeat(nowMs)
    entry.awaitingFirstHeartbeat = true
    return true
  }

  /** Stops monitoring `id` (it left, or was downed). Returns whether it was known. */
  remove(id: string): boolean {
    return this.#entries.delete(id)
  }

  /** Whether `id` is monitored. */
  has(id: string): boolean {
    return this.#entries.has(id)
  }

  /** Monitored ids, in registration order. */
  ids(): string[] {
    return [...this.#entries.keys()]
  }

  /**
   * Evaluates every detector at `nowMs` and returns the transitions only.
   * Pass the verdict of `LocalHealth.tick` taken just before, so a local
   * pause is forgiven before anyone is judged.
   *
   * - Reachable → Unreachable when φ ≥ threshold, except inside a
   *   post-pause grace window.
   * - Unreachable → Reachable when a heartbeat arrived since the member
   *   became Unreachable and φ is now below the threshold.
   */
  check(nowMs: number, localHealth?: LocalHealthVerdict): ReachabilityChanges {
    // Forgive the pause first: judging before it would accuse every peer
    // for the silence this node itself caused.
    if (localHealth?.status === 'paused') this.onLocalPause(nowMs, localHealth.blindMs, localHealth.pausedUntilMs)
    const suppressed = this.isSuppressed(nowMs)
    const unreachable: string[] = []
    const reachable: string[] = []
    for (const [id, entry] of this.#entries) {
      const available = entry.detector.isAvailable(nowMs)
      if (entry.reachability === 'reachable') {
        if (!available && !suppressed) {
          entry.reachability = 'unreachable'
          entry.unreachableSinceMs = nowMs
          entry.heartbeatSinceUnreachable = false
          unreachable.push(id)
        }
      } else if (entry.heartbeatSinceUnreachable && available) {
        entry.reachability = 'reachable'
        entry.unreachableSinceMs = undefined
        entry.heartbeatSinceUnreachable = false
        reachable.push(id)
      }
    }
    return { unreachable, reachable }
  }

  /** φ of `id` at `nowMs`; 0 for an unknown id. */
  phi(id: string, nowMs: number): number {
    return this.#entries.get(id)?.detector.phi(nowMs) ?? 0
  }

  /** The verdict of the last `check`; unknown ids count as reachable (as in Pekko's registry). */
  isReachable(id: string): boolean {
    return this.#entries.get(id)?.reachability !== 'unreachable'
  }

  /** Reachability of `id`, or undefined when not monitored. */
  reachability(id: string): Reachability | undefined {
    return this.#entries.get(id)?.reachability
  }

  /**
   * When `id` became Unreachable (moved forward past local pauses), or
   * undefined while it is Reachable or unknown. The downing window runs
   * from here.
   */
  unreachableSince(id: string): number | undefined {
    return this.#entries.get(id)?.unreachableSinceMs
  }

  /** The detector of `id`, for diagnostics (`/cluster/members`, metrics). */
  detectorOf(id: string): PhiAccrualDetector | undefined {
    return this.#entries.get(id)?.detector
  }

  /**
   * Members Unreachable for at least `downAfterUnreachableMs` (the
   * stable-after window), in registration order. Empty inside a post-pause
   * grace window: this node's own view is stale then.
   */
  downEligible(nowMs: number): string[] {
    if (this.isSuppressed(nowMs)) return []
    const out: string[] = []
    for (const [id, entry] of this.#entries) {
      if (entry.unreachableSinceMs !== undefined && nowMs - entry.unreachableSinceMs >= this.options.downAfterUnreachableMs) out.push(id)
    }
    return out
  }

  /**
   * This node was unable to process anything for up to `blindMs` before
   * `nowMs` (its own event loop stalled; `LocalHealthVerdict.blindMs`). For
   * every member:
   *
   * 1. samples taken inside the blind gap are retracted: their intervals
   *    measure our stall or the burst of buffered heartbeats after it, not
   *    the peer (heartbeats can be processed before the overdue timer);
   * 2. a Reachable member's last heartbeat moves forward by `blindMs` (at
   *    most to `nowMs`), so only silence we actually observed counts;
   * 3. an Unreachable member's Unreachable-since moves forward the same way,
   *    so the downing window does not count time we were blind.
   *
   * Accusations, new samples and downing are then suppressed until
   * `suppressUntilMs` (default `nowMs + localPauseGraceMs`).
   */
  onLocalPause(nowMs: number, blindMs: number, suppressUntilMs = nowMs + this.options.localPauseGraceMs): void {
    const blind = Math.max(0, blindMs)
    const blindFromMs = nowMs - blind
    for (const entry of this.#entries.values()) {
      entry.detector.retractSamplesAfter(blindFromMs)
      if (entry.reachability === 'reachable') entry.detector.shiftLastHeartbeat(blind, nowMs)
      else if (entry.unreachableSinceMs !== undefined) entry.unreachableSinceMs = Math.min(nowMs, entry.unreachableSinceMs + blind)
    }
    this.#suppressedUntilMs = Math.max(this.#suppressedUntilMs, suppressUntilMs)
  }

  /** True inside a post-pause grace window. */
  isSuppressed(nowMs: number): boolean {
    return nowMs < this.#suppressedUntilMs
  }

  /** End of the current (or last) grace window, ms; -Infinity before any pause. */
  get suppressedUntilMs(): number {
    return this.#suppressedUntilMs
  }

  #entryOf(id: string): Entry {
    let entry = this.#entries.get(id)
    if (entry === undefined) {
      entry = { detector: new PhiAccrualDetector(this.options), reachability: 'reachable', unreachableSinceMs: undefined, heartbeatSinceUnreachable: false, awaitingFirstHeartbeat: false }
      this.#entries.set(id, entry)
    }
    return entry
  }
}
