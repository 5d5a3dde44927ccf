/**
 * The receiving side of one ring: drain frames in batches, and park with
 * Atomics.waitAsync when the ring is empty. Never Atomics.wait: a blocked
 * thread would stop its timers (idle passivation, ask timeouts) and any
 * async grain code.
 *
 * After each non-empty batch the pump yields with setImmediate so timers and
 * I/O on the same thread run even under a steady stream of frames.
 */

import { setImmediate as yieldToLoop } from 'node:timers/promises'
import type { CpuHeadroom } from './cpu-headroom.js'
import type { FrameHandler, RingConsumer } from './spsc-ring.js'

export interface FramePumpOptions {
  /** Frames per drain call before yielding. */
  batchFrames?: number
  /**
   * Bytes of frames per drain call before yielding (default 128 KiB, about
   * 1024 single envelopes): a tell run is one frame of hundreds of tells.
   */
  batchBytes?: number
  /** Called before each drain (refresh coarse clocks). */
  beforeBatch?: () => void
  /** Called after each non-empty batch (publish replies, flush queues). */
  afterBatch?: () => void
  /** When it returns a promise, the pump waits on it before draining more (backpressure). */
  gate?: () => Promise<void> | undefined
  /** Busy-poll this long (µs) before parking; trades CPU for wake-up latency. */
  spinMicros?: number
  /**
   * Ceiling (µs) of the adaptive spin: when the ring stayed empty no longer
   * than this, the next spin lasts 1.5× that gap (at most this), so a steady
   * conversation (a remote ask every ~100-400 µs) finds the thread awake.
   * A longer gap sets the spin back to spinMicros.
   * Default spinMicros (no adaptation).
   */
  spinMaxMicros?: number
  /** Spin only while this holds (e.g. while asks are outstanding). Default: always. */
  spinWhile?: () => boolean
  /** Spin past spinMicros (the adaptive spin) only while the machine has a spare CPU (see CpuHeadroom). Default: no such check. */
  headroom?: CpuHeadroom
  /** Called when a handler throws; the frame is skipped, the pump continues. */
  onError?: (e: unknown) => void
}

export class FramePump {
  #stopped = false
  #parked = false
  #woken = false
  #running: Promise<void> | undefined
  readonly #consumer: RingConsumer
  readonly #onFrame: FrameHandler
  readonly #batch: number
  readonly #batchBytes: number
  readonly #afterBatch: () => void
  readonly #beforeBatch: () => void
  readonly #gate: (() => Promise<void> | undefined) | undefined
  readonly #spinUs: number
  readonly #spinMaxUs: number
  readonly #adaptive: boolean
  /** The spin of the next park, µs: between #spinUs and #spinMaxUs. */
  #spinNowUs: number
  readonly #onError: (e: unknown) => void
  readonly #spinWhile: () => boolean
  readonly #headroom: CpuHeadroom | undefined
  /** ms spun since the last headroom check. */
  #spunMs = 0

  constructor(consumer: RingConsumer, onFrame: FrameHandler, options: FramePumpOptions = {}) {
    this.#consumer = consumer
    this.#onFrame = onFrame
    this.#batch = options.batchFrames ?? 1024
    this.#batchBytes = options.batchBytes ?? 128 * 1024
    this.#afterBatch = options.afterBatch ?? noop
    this.#beforeBatch = options.beforeBatch ?? noop
    this.#gate = options.gate
    this.#spinUs = Math.max(0, options.spinMicros ?? 0)
    // spinMicros 0 turns spinning off altogether, adaptive or not.
    this.#spinMaxUs = this.#spinUs === 0 ? 0 : Math.max(this.#spinUs, options.spinMaxMicros ?? 0)
    this.#adaptive = this.#spinMaxUs > this.#spinUs
    this.#spinNowUs = this.#spinUs
    this.#onError = options.onError ?? noop
    this.#spinWhile = options.spinWhile ?? always
    this.#headroom = options.headroom
  }

  start(): void {
    this.#running ??= this.#loop()
  }

  /** Stop after the current batch; resolves when the loop has exited. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#consumer.cancelWait()
    await this.#running
  }

  /** Drain whatever is there now, synchronously (shutdown and crash paths). */
  drainNow(): number {
    let total = 0
    for (;;) {
      const n = this.#drainOnce()
      total += n
      if (n === 0) return total
    }
  }

  #drainOnce(): number {
    try {
      return this.#consumer.drain(this.#onFrame, this.#batch, this.#batchBytes)
    } catch (e) {
      // drain() advanced past the bad frame before rethrowing.
      this.#onError(e)
      return 1
    }
  }

  async #loop(): Promise<void> {
    const c = this.#consumer
    while (!this.#stopped) {
      const gate = this.#gate?.()
      if (gate !== undefined) {
        await gate
        continue
      }
      this.#beforeBatch()
      const n = this.#drainOnce()
      if (n > 0) {
        this.#afterBatch()
        await yieldToLoop()
        continue
      }
      // One clock read serves the spin's deadline and the idle gap.
      const idleFrom = this.#spinUs > 0 ? performance.now() : 0
      if (this.#spinUs > 0 && this.#spinWhile() && this.#spin(idleFrom, this.#hasHeadroom(idleFrom) ? this.#spinNowUs : this.#spinUs)) continue
      const parked = c.waitForData()
      if (parked === undefined) continue
      this.#parked = true
      await parked
      this.#parked = false
      // A wake() is not data: it must not teach the spin anything.
      if (this.#adaptive && !this.#woken) this.#adapt(this.#idleGapUs(idleFrom))
      this.#woken = false
    }
  }

  /**
   * Unpark now, so the pump spins for data it expects soon (a reply to a
   * call just relayed): without it the pump sleeps through the reply and
   * pays a thread wake-up for it. No-op while running.
   */
  wake(): void {
    if (!this.#parked || this.#woken) return
    this.#woken = true
    this.#consumer.cancelWait()
  }

  /**
   * Size the next spin from how long the ring stayed empty this time (spin
   * plus sleep, µs). A gap within the ceiling is conversational traffic:
   * spin 1.5× it (at most the ceiling), so the next message finds the thread
   * awake, and once awake the exchange runs faster and stays so. A longer
   * gap resets the spin to the minimum: spinning would not reach the next
   * message and would only burn the core.
   */
  #adapt(idleUs: number): void {
    this.#spinNowUs = idleUs <= this.#spinMaxUs ? Math.max(this.#spinUs, Math.min(this.#spinMaxUs, idleUs * 1.5)) : this.#spinUs
  }

  /**
   * How long the ring stayed empty, µs: from `idleFrom` to when the producer
   * published and woke us, not to when this thread got to run again. A
   * wake-up can take hundreds of µs on a VM with idle vCPUs; counted in,
   * it pushed conversational gaps past the ceiling, which set the spin to
   * its minimum, so the next message found the thread parked again: a
   * steady exchange could stay in that state, every message paying a
   * wake-up (remote ask p50 ~670 instead of ~90 µs in one of eight probe
   * runs). A wake by timeout or without a stamp falls back to the time
   * until now.
   */
  #idleGapUs(idleFrom: number): number {
    const now = performance.now()
    const woke = this.#consumer.notifiedAt - performance.timeOrigin
    return (woke >= idleFrom && woke <= now ? woke - idleFrom : now - idleFrom) * 1000
  }

  /** The spin the next park will do, µs (for tests and diagnostics). */
  get spinNowMicros(): number {
    return this.#spinNowUs
  }

  #hasHeadroom(now: number): boolean {
    if (this.#headroom === undefined) return true
    const spun = this.#spunMs
    this.#spunMs = 0
    return this.#headroom.allows(now, spun)
  }

  #spin(from: number, us: number): boolean {
    // performance.now(), not hrtime.bigint(): no BigInt allocated per poll.
    const until = from + us / 1000
    const c = this.#consumer
    let now = from
    let caught = false
    while ((now = performance.now()) < until) {
      if (!c.isEmpty()) {
        caught = true
        break
      }
    }
    if (this.#headroom !== undefined) this.#spunMs += now - from
    return caught
  }
}

function noop(): void {}
function always(): boolean {
  return true
}
