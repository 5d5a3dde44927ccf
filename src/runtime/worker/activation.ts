/**
 * One live grain: its key, its state, and its mailbox. The activation is
 * also the GrainContext its handlers receive, so an idle activation costs one
 * small object plus its state (the benchmark measures ≤ 1 KiB).
 *
 * The mailbox (key-limits.ts: per-key concurrency and queue limits) is only
 * materialised when a message arrives while another is in progress (async
 * handler or onActivate); the common synchronous case never allocates a queue.
 */

import type { PublishResult } from '../../common/publish-result.js'
import type { PubSubRequest } from '../../wire/control.js'
import type { GrainContext } from '../../grains/grain-context.js'
import type { KindEntry, MethodEntry } from '../../grains/kind-registry.js'
import { KeyMailbox } from './key-limits.js'

export interface QueuedMessage {
  method: MethodEntry
  payload: unknown
  /** Thread waiting for the reply, or -1 for a tell. */
  replyTo: number
  correlationId: number
  /** Call chain the request belongs to (undefined: a call from outside any grain call). */
  chain: string | undefined
  /** Asks: how long the caller waits (the envelope's timeout_ms); 0 for tells and asks that do not say (never expire). */
  timeoutMs: number
  /** When it was queued (performance.now()), with timeoutMs > 0. */
  queuedAt: number
}

/** What a released activation hands to its next owner (spec ActivationRecord, minus the PID the main thread adds). */
export interface ReleasedRecord {
  kind: string
  key: string
  version: number
  /** Present when the kind's snapshot hook ran and its value could be encoded. */
  snapshot?: unknown
  /** Why there is no snapshot, when there is none. */
  reason?: string
}

/** What an activation needs from the thread that hosts it. */
export interface ActivationHost {
  tell(kind: string, key: string, method: string, payload: unknown): void
  /** `chain`: the asking call's call chain, carried by the request (call-chain reentrancy). */
  ask<R>(kind: string, key: string, method: string, payload: unknown, timeoutMs: number | undefined, chain: string | undefined): Promise<R>
  tellPid(pid: string, method: string, payload: unknown): void
  askPid<R>(pid: string, method: string, payload: unknown, timeoutMs: number | undefined, chain: string | undefined): Promise<R>
  whenWritable(pid: string | undefined, timeoutMs: number | undefined): Promise<void>
  pubsub<R>(req: PubSubRequest, timeoutMs: number | undefined): Promise<R>
  /** A call chain id unique in the cluster. */
  newCallChain(): string
}

export class Activation extends KeyMailbox<QueuedMessage> implements GrainContext {
  state: unknown
  /**
   * Coarse time of the last message (host clock, ms), for idle passivation.
   * Initialised here, as a number: a field declared without a value starts
   * as undefined, V8 then keeps it as a tagged field, and every store of a
   * fractional clock allocates a new heap number (16 B per message).
   */
  lastUsedMs = 0
  deactivateRequested = false
  /** Set once passivation has begun; messages then wait for the next activation. */
  deactivating = false
  /** Hand-off generation of this key's state (ActivationRecord.version). */
  version = 0
  /** The host's key-cache slot that points here (-1: none); lets the host clear it on discard. */
  cacheSlot = -1
  /** Set while a release (state hand-off to a new owner) waits for this activation to go idle. */
  released: ((record: ReleasedRecord) => void) | null = null
  /**
   * Call-chain reentrancy: the chain of the exclusive call holding the key
   * (named by its caller, or given one when it first asks someone), and how
   * many exclusive calls of that chain are in flight (the one that took the
   * key plus those that re-entered it). The key is free at depth 0.
   */
  chain: string | undefined = undefined
  chainDepth = 0

  /** Is the key held by call chain `chain` (so a call of it runs inside that call)? */
  heldBy(chain: string | undefined): boolean {
    return chain !== undefined && this.chainDepth > 0 && this.chain === chain
  }

  /**
   * May an interleave call run now? Once the activation has its state (busy
   * at depth 0 is onActivate or a hand-off still running), and not while it
   * passivates.
   */
  get interleavable(): boolean {
    return !this.deactivating && !(this.busy && this.chainDepth === 0)
  }

  constructor(
    readonly host: ActivationHost,
    readonly entry: KindEntry,
    readonly key: string,
    state: unknown,
    nowMs: number,
  ) {
    super()
    this.state = state
    this.lastUsedMs = nowMs
  }

  get kind(): string {
    return this.entry.kind
  }

  protected override isShared(m: QueuedMessage): boolean {
    return m.method.readOnly
  }

  /** Interleave calls in the queue: they only wait there while the activation starts. */
  interleaveQueued = 0

  // Every queue change goes through these: the kind's count of waiting calls stays exact.
  override enqueue(item: QueuedMessage): void {
    super.enqueue(item)
    this.entry.load.queued++
    if (item.method.interleave) this.interleaveQueued++
  }

  override dequeue(): QueuedMessage | undefined {
    const m = super.dequeue()
    if (m !== undefined) {
      this.entry.load.queued--
      if (m.method.interleave) this.interleaveQueued--
    }
    return m
  }

  /** Take the waiting interleave calls out of the queue, in order; the others keep theirs. */
  takeInterleaved(): QueuedMessage[] {
    const out: QueuedMessage[] = []
    const rest: QueuedMessage[] = []
    for (let m = this.dequeue(); m !== undefined; m = this.dequeue()) (m.method.interleave ? out : rest).push(m)
    for (const m of rest) this.enqueue(m)
    return out
  }

  tell(kind: string, key: string, method: string, payload?: unknown): void {
    this.host.tell(kind, key, method, payload)
  }

  ask<R = unknown>(kind: string, key: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R> {
    return this.host.ask<R>(kind, key, method, payload, options?.timeoutMs, this.#callChain())
  }

  /**
   * The chain an ask made now belongs to: the exclusive call in flight, if
   * any (onActivate and readOnly calls hold no key, so they start none).
   */
  #callChain(): string | undefined {
    if (this.chainDepth === 0) return undefined
    return (this.chain ??= this.host.newCallChain())
  }

  tellPid(pid: string, method: string, payload?: unknown): void {
    this.host.tellPid(pid, method, payload)
  }

  askPid<R = unknown>(pid: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R> {
    return this.host.askPid<R>(pid, method, payload, options?.timeoutMs, this.#callChain())
  }

  whenWritable(pid?: string, options?: { timeoutMs?: number }): Promise<void> {
    return this.host.whenWritable(pid, options?.timeoutMs)
  }

  publish(topic: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<PublishResult> {
    return this.host.pubsub({ op: 'publish', topic, payload }, options?.timeoutMs)
  }

  async subscribe(topic: string, method: string): Promise<void> {
    await this.host.pubsub({ op: 'subscribe', topic, kind: this.kind, key: this.key, method }, undefined)
  }

  unsubscribe(topic: string, method: string): Promise<boolean> {
    return this.host.pubsub<boolean>({ op: 'unsubscribe', topic, kind: this.kind, key: this.key, method }, undefined)
  }

  deactivate(): void {
    this.deactivateRequested = true
  }
}
