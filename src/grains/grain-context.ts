/**
 * What a handler sees: its activation's state and identity, and calls to
 * other grains (on any worker of this node). Implemented by the worker's
 * Activation; this file only states the contract.
 */
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
  /** Ask the runtime to passivate this activation after the current message. */
  deactivate(): void
}
