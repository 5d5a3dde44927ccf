/**
 * One live grain: its key, its state, and its mailbox. The activation is
 * also the GrainContext its handlers receive, so an idle activation costs one
 * small object plus its state (the benchmark measures ≤ 1 KiB).
 *
 * The mailbox is only materialised when a message arrives while another is
 * in progress (async handler or onActivate); the common synchronous case
 * never allocates a queue.
 */

import type { GrainContext } from '../../grains/grain-context.js'
import type { KindEntry, MethodEntry } from '../../grains/kind-registry.js'

export interface QueuedMessage {
  method: MethodEntry
  payload: unknown
  /** Thread waiting for the reply, or -1 for a tell. */
  replyTo: number
  correlationId: number
}

/** What an activation needs from the thread that hosts it. */
export interface ActivationHost {
  tell(kind: string, key: string, method: string, payload: unknown): void
  ask<R>(kind: string, key: string, method: string, payload: unknown, timeoutMs: number | undefined): Promise<R>
  tellPid(pid: string, method: string, payload: unknown): void
  askPid<R>(pid: string, method: string, payload: unknown, timeoutMs: number | undefined): Promise<R>
}

export class Activation implements GrainContext {
  state: unknown
  /** Coarse time of the last message (host clock, ms), for idle passivation. */
  lastUsedMs: number
  /** A handler (or onActivate/onDeactivate) is in progress. */
  busy = false
  deactivateRequested = false
  /** Set once passivation has begun; messages then wait for the next activation. */
  deactivating = false
  queue: QueuedMessage[] | null = null
  queueHead = 0

  constructor(
    readonly host: ActivationHost,
    readonly entry: KindEntry,
    readonly key: string,
    state: unknown,
    nowMs: number,
  ) {
    this.state = state
    this.lastUsedMs = nowMs
  }

  get kind(): string {
    return this.entry.kind
  }

  enqueue(m: QueuedMessage): void {
    if (this.queue === null) {
      this.queue = [m]
      this.queueHead = 0
    } else this.queue.push(m)
  }

  /** Next queued message, or undefined (and the queue is released). */
  dequeue(): QueuedMessage | undefined {
    const q = this.queue
    if (q === null) return undefined
    if (this.queueHead >= q.length) {
      this.queue = null
      this.queueHead = 0
      return undefined
    }
    const m = q[this.queueHead]!
    q[this.queueHead++] = undefined as unknown as QueuedMessage
    return m
  }

  get queued(): number {
    return this.queue === null ? 0 : this.queue.length - this.queueHead
  }

  tell(kind: string, key: string, method: string, payload?: unknown): void {
    this.host.tell(kind, key, method, payload)
  }

  ask<R = unknown>(kind: string, key: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R> {
    return this.host.ask<R>(kind, key, method, payload, options?.timeoutMs)
  }

  tellPid(pid: string, method: string, payload?: unknown): void {
    this.host.tellPid(pid, method, payload)
  }

  askPid<R = unknown>(pid: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R> {
    return this.host.askPid<R>(pid, method, payload, options?.timeoutMs)
  }

  deactivate(): void {
    this.deactivateRequested = true
  }
}
