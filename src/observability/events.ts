/**
 * Runtime events: everything observable in graincluster is one of these,
 * published on the node's EventStream. Types are '<category>.<event>'
 * (plus the bare 'deadletter'); every event carries its category, a wall
 * clock timestamp, and where relevant the grain kind/key, worker and reason.
 */

export type EventCategory = 'grain' | 'worker' | 'ring' | 'deadletter' | 'frame' | 'node'

interface Base<T extends string> {
  type: T
  category: EventCategory
  /** Wall-clock milliseconds since the epoch when the event was recorded. */
  at: number
}

export interface GrainActivated extends Base<'grain.activated'> {
  kind: string
  key: string
  worker: number
}
export interface GrainDeactivated extends Base<'grain.deactivated'> {
  kind: string
  key: string
  worker: number
  reason: 'idle' | 'shutdown' | 'activation-failed' | 'requested'
}
export interface GrainActivationFailed extends Base<'grain.activation-failed'> {
  kind: string
  key: string
  worker: number
  reason: string
}
export interface GrainHandlerFailed extends Base<'grain.handler-failed'> {
  kind: string
  key: string
  worker: number
  method: string
  code: string
  reason: string
}
export interface WorkerStarted extends Base<'worker.started'> {
  worker: number
  threadId: number
  restarts: number
}
export interface WorkerCrashed extends Base<'worker.crashed'> {
  worker: number
  reason: string
  /** Calls that were waiting on the worker and failed with ERR_WORKER_CRASHED. */
  failedCalls: number
}
export interface WorkerRestarted extends Base<'worker.restarted'> {
  worker: number
  restarts: number
  delayMs: number
}
export interface RingFull extends Base<'ring.full'> {
  worker: number
  direction: 'to-worker' | 'to-main'
  /** Frames waiting in the bounded overflow queue when the ring filled. */
  queued: number
  reason: string
}
export interface RingDrained extends Base<'ring.drained'> {
  worker: number
  direction: 'to-worker' | 'to-main'
}
export interface DeadLetter extends Base<'deadletter'> {
  kind: string
  key: string
  messageType: number
  code: string
  reason: string
  worker?: number
}
export interface FrameMalformed extends Base<'frame.malformed'> {
  source: string
  reason: string
}
export interface NodeStarted extends Base<'node.started'> {
  workers: number
  partitions: number
}
export interface NodeStopped extends Base<'node.stopped'> {
  reason: string
}

export type RuntimeEvent =
  | GrainActivated
  | GrainDeactivated
  | GrainActivationFailed
  | GrainHandlerFailed
  | WorkerStarted
  | WorkerCrashed
  | WorkerRestarted
  | RingFull
  | RingDrained
  | DeadLetter
  | FrameMalformed
  | NodeStarted
  | NodeStopped

export type RuntimeEventType = RuntimeEvent['type']
export type EventOf<T extends RuntimeEventType> = Extract<RuntimeEvent, { type: T }>

/** Distributive Omit so each union member keeps its own fields. */
export type EventInit<E> = E extends RuntimeEvent ? Omit<E, 'category' | 'at'> & { at?: number } : never

export function categoryOf(type: string): EventCategory {
  const dot = type.indexOf('.')
  return (dot < 0 ? type : type.slice(0, dot)) as EventCategory
}

export const EVENT_CATEGORIES: readonly EventCategory[] = ['grain', 'worker', 'ring', 'deadletter', 'frame', 'node']
