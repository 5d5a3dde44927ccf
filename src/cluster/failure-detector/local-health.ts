/**
 * Local health: did this node's own event loop stall? Sans-I/O.
 *
 * In the spirit of Lifeguard (A. Dadgar, J. Phillips, J. Currey, "Lifeguard:
 * Local Health Awareness for More Accurate Failure Detection", 2018,
 * arXiv:1707.00788; hashicorp/memberlist `awareness.go`): a member that is
 * itself slow must not turn its own slowness into accusations against its
 * peers. A process that was SIGSTOPped, or whose event loop was blocked by a
 * long synchronous task or GC, received nothing while it was stalled; when it
 * resumes, every peer looks silent for the whole stall, and φ says "dead".
 *
 * Detection is by timer lag: a periodic timer that should fire every
 * `expectedIntervalMs` fires late by exactly the stall (plus scheduling
 * noise). When the lag exceeds `lagThresholdMs` the verdict is `paused`:
 *
 * - `blindMs` is the whole gap since the previous tick, the longest time the
 *   node may have been unable to process heartbeats (the stall lies inside
 *   that gap; counting the whole gap errs towards not accusing);
 * - `pausedUntilMs` ends a grace window during which accusations and new
 *   inter-arrival samples are suppressed: heartbeats buffered by the kernel
 *   during the stall arrive in a burst, and their intervals say nothing
 *   about the peer.
 *
 * The driver calls `tick` from the same timer callback that runs the
 * failure-detector check, BEFORE the check, and hands the verdict to
 * `FailureDetectorRegistry.check(nowMs, verdict)` (detector-registry.ts).
 * Ordering matters: after a SIGSTOP, libuv can deliver the buffered socket
 * reads before the overdue timer, so heartbeats may be processed before this
 * tick; the registry therefore also retracts samples taken inside the gap.
 */

/** Settings of the local-health check (from `FailureDetectorSettings`). */
export interface LocalHealthOptions {
  /** Timer lag above which the node counts as having been paused, ms. */
  readonly lagThresholdMs: number
  /** Length of the suppression window after a pause, ms. */
  readonly graceMs: number
}

/** The result of one tick. */
export type LocalHealthVerdict =
  | { readonly status: 'healthy'; readonly lagMs: number }
  | {
      readonly status: 'paused'
      /** How late the timer fired, ms. */
      readonly lagMs: number
      /** The gap since the previous tick: the most this node can have missed, ms. */
      readonly blindMs: number
      /** End of the window in which accusations and samples are suppressed, ms. */
      readonly pausedUntilMs: number
    }

/** Timer-lag monitor for this node's own event loop. */
export class LocalHealth {
  readonly options: LocalHealthOptions
  #lastTickMs: number | undefined
  #pausedUntilMs = -Infinity
  #lastLagMs = 0
  #maxLagMs = 0
  #pauseCount = 0

  constructor(options: LocalHealthOptions) {
    this.options = options
  }

  /**
   * Call on every firing of the periodic timer, with the time it fired and
   * the period it was scheduled with. The first tick only starts the clock.
   */
  tick(nowMs: number, expectedIntervalMs: number): LocalHealthVerdict {
    const last = this.#lastTickMs
    // Never move backwards: a non-monotonic input must not open a huge gap later.
    this.#lastTickMs = last === undefined ? nowMs : Math.max(last, nowMs)
    if (last === undefined) return { status: 'healthy', lagMs: 0 }
    const gapMs = Math.max(0, nowMs - last)
    const lagMs = Math.max(0, gapMs - Math.max(0, expectedIntervalMs))
    this.#lastLagMs = lagMs
    if (lagMs > this.#maxLagMs) this.#maxLagMs = lagMs
    if (!(lagMs > this.options.lagThresholdMs)) return { status: 'healthy', lagMs }
    this.#pauseCount++
    this.#pausedUntilMs = Math.max(this.#pausedUntilMs, nowMs + this.options.graceMs)
    return { status: 'paused', lagMs, blindMs: gapMs, pausedUntilMs: this.#pausedUntilMs }
  }

  /** True inside the grace window that follows a detected pause. */
  isPaused(nowMs: number): boolean {
    return nowMs < this.#pausedUntilMs
  }

  /** End of the current (or last) grace window, ms; -Infinity before any pause. */
  get pausedUntilMs(): number {
    return this.#pausedUntilMs
  }

  /** Lag measured at the last tick, ms. */
  get lastLagMs(): number {
    return this.#lastLagMs
  }

  /** Largest lag seen so far, ms (for metrics). */
  get maxLagMs(): number {
    return this.#maxLagMs
  }

  /** Pauses detected so far (for metrics and events). */
  get pauseCount(): number {
    return this.#pauseCount
  }
}
