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
import type { FrameHandler, RingConsumer } from './spsc-ring.js'

export interface FramePumpOptions {
  /** Frames per drain call before yielding. */
  batchFrames?: number
  /** Called before each drain (refresh coarse clocks). */
  beforeBatch?: () => void
  /** Called after each non-empty batch (publish replies, flush queues). */
  afterBatch?: () => void
  /** When it returns a promise, the pump waits on it before draining more (backpressure). */
  gate?: () => Promise<void> | undefined
  /** Busy-poll this long (µs) before parking; trades CPU for wake-up latency. */
  spinMicros?: number
  /** Spin only while this holds (e.g. while asks are outstanding). Default: always. */
  spinWhile?: () => boolean
  /** Called when a handler throws; the frame is skipped, the pump continues. */
  onError?: (e: unknown) => void
}

export class FramePump {
  #stopped = false
  #running: Promise<void> | undefined
  readonly #consumer: RingConsumer
  readonly #onFrame: FrameHandler
  readonly #batch: number
  readonly #afterBatch: () => void
  readonly #beforeBatch: () => void
  readonly #gate: (() => Promise<void> | undefined) | undefined
  readonly #spinNs: bigint
  readonly #onError: (e: unknown) => void
  readonly #spinWhile: () => boolean

  constructor(consumer: RingConsumer, onFrame: FrameHandler, options: FramePumpOptions = {}) {
    this.#consumer = consumer
    this.#onFrame = onFrame
    this.#batch = options.batchFrames ?? 1024
    this.#afterBatch = options.afterBatch ?? noop
    this.#beforeBatch = options.beforeBatch ?? noop
    this.#gate = options.gate
    this.#spinNs = BigInt(Math.max(0, Math.round((options.spinMicros ?? 0) * 1000)))
    this.#onError = options.onError ?? noop
    this.#spinWhile = options.spinWhile ?? always
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
      return this.#consumer.drain(this.#onFrame, this.#batch)
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
      if (this.#spinNs > 0n && this.#spinWhile() && this.#spin()) continue
      const parked = c.waitForData()
      if (parked !== undefined) await parked
    }
  }

  #spin(): boolean {
    const until = process.hrtime.bigint() + this.#spinNs
    const c = this.#consumer
    while (process.hrtime.bigint() < until) if (!c.isEmpty()) return true
    return false
  }
}

function noop(): void {}
function always(): boolean {
  return true
}
