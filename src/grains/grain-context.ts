/**
 * What a handler sees: its activation's state and identity, and calls to
 * other grains (on any worker of this node). Implemented by the worker's
 * Activation; this file only states the contract.
 */
import type { PublishResult } from '../common/publish-result.js'

export interface GrainContext<S = unknown> {
  readonly kind: string
  readonly key: string
  /** The activation's state; mutate it freely, it lives until passivation. */
  state: S
  /** Fire-and-forget message to another grain. */
  tell(kind: string, key: string, method: string, payload?: unknown): void
  /** Request/response call to another grain; rejects with a GrainClusterError. */
  ask<R = unknown>(kind: string, key: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R>
  /** Fire-and-forget to a grain by PID, on any node of the cluster. */
  tellPid(pid: string, method: string, payload?: unknown): void
  /** Request/response to a grain by PID, on any node; rejects with a GrainClusterError. */
  askPid<R = unknown>(pid: string, method: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R>
  /**
   * Backpressure for a grain that streams tells. Without `pid`: resolves once
   * this worker's ring to the main thread has no backlog. With a PID:
   * resolves once the node may send to it (GrainNode.whenWritable: its
   * authority connected, nothing deferred, the transport under
   * `associations.writableBufferedBytes`), counting this grain's earlier
   * calls; rejects with what a send would throw (ERR_AUTHORITY_UNREACHABLE,
   * …) or ERR_AUTHORITY_NOT_WRITABLE after `timeoutMs` (default
   * askTimeoutMs). One round trip to the main thread: call it every
   * thousand tells or so, not before each, but often enough that a burst
   * between two calls fits this worker's ring and overflow queue
   * (`maxOverflowFrames`); past them a tell throws ERR_RING_FULL.
   */
  whenWritable(pid?: string, options?: { timeoutMs?: number }): Promise<void>
  /**
   * Publish to a cluster PubSub topic (node.pubsub.publish, on this node's
   * main thread). Resolves with what the publish reports once every
   * delivery has ended; rejects with ERR_PUBSUB_TOPIC_NOT_FOUND or
   * ERR_PUBSUB_NO_SUBSCRIBERS when it reaches nobody, or ERR_GRAIN_TIMEOUT
   * when no answer came within `timeoutMs` (default askTimeoutMs; the
   * deliveries go on). Deliveries do not join this call's chain: a grain
   * that awaits an at-least-once publish to a topic it subscribes to waits
   * for its own queue, so do not await that one (attach a catch instead).
   */
  publish(topic: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<PublishResult>
  /**
   * Subscribe this grain (its kind and key) to a topic: each message
   * published to it is delivered as `method(payload)`, wherever the key is
   * placed. Idempotent; the subscription outlives this activation.
   * Rejects with ERR_PUBSUB_TOPIC_NOT_FOUND or ERR_PUBSUB_INVALID.
   */
  subscribe(topic: string, method: string): Promise<void>
  /** Undo subscribe; resolves with whether there was such a subscription. */
  unsubscribe(topic: string, method: string): Promise<boolean>
  /** Ask the runtime to passivate this activation after the current message. */
  deactivate(): void
}
