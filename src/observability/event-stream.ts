/**
 * EventStream: typed pub/sub of runtime events (Akka's EventStream,
 * Proto.Actor's EventStream). Subscribers filter by exact type
 * ('grain.activated'), by category ('grain.*'), or take everything ('*').
 *
 * Publishing is synchronous and a throwing subscriber never breaks the
 * publisher or other subscribers. Producers that pay to build events (the
 * worker threads) can ask `wants(category)` first: the stream keeps a
 * category interest mask that the node shares with its workers.
 */

import { type EventCategory, type EventInit, type EventOf, type RuntimeEvent, type RuntimeEventType, categoryOf, EVENT_CATEGORIES } from './events.js'

export type EventFilter = RuntimeEventType | `${EventCategory}.*` | '*'
type Listener = (e: RuntimeEvent) => void

export function categoryBit(c: EventCategory): number {
  return 1 << EVENT_CATEGORIES.indexOf(c)
}

export class EventStream {
  #byFilter = new Map<string, Set<Listener>>()
  #mask = 0
  #onMaskChange: ((mask: number) => void) | undefined
  #listenerErrors = 0

  /** Number of times a subscriber threw (they are isolated, not rethrown). */
  get listenerErrors(): number {
    return this.#listenerErrors
  }

  subscribe<F extends EventFilter>(
    filter: F,
    fn: (e: F extends RuntimeEventType ? EventOf<F> : RuntimeEvent) => void,
  ): () => void {
    let set = this.#byFilter.get(filter)
    if (set === undefined) this.#byFilter.set(filter, (set = new Set()))
    const l = fn as Listener
    set.add(l)
    this.#recomputeMask()
    return () => {
      // Idempotent: a second call must not delete a newer set for this filter.
      if (!set.delete(l)) return
      if (set.size === 0) this.#byFilter.delete(filter)
      this.#recomputeMask()
    }
  }

  /** Resolve with the first event matching `filter` and `pred`; `signal` (e.g. AbortSignal.timeout(ms)) gives up the wait. */
  once<F extends EventFilter>(
    filter: F,
    pred: (e: F extends RuntimeEventType ? EventOf<F> : RuntimeEvent) => boolean = () => true,
    options: { signal?: AbortSignal } = {},
  ): Promise<F extends RuntimeEventType ? EventOf<F> : RuntimeEvent> {
    const { signal } = options
    // As node:events once(): an aborted wait rejects with the signal's reason and leaves no subscription behind.
    if (signal?.aborted === true) return Promise.reject(abortReason(signal))
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        off()
        reject(abortReason(signal!))
      }
      const off = this.subscribe(filter, (e) => {
        if (pred(e)) {
          off()
          signal?.removeEventListener('abort', onAbort)
          resolve(e)
        }
      })
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** True if anyone listens to events of this category. */
  wants(category: EventCategory): boolean {
    return (this.#mask & categoryBit(category)) !== 0
  }

  get interestMask(): number {
    return this.#mask
  }

  /** Called with the new mask whenever subscriptions change (the node mirrors it to workers). */
  onInterestChange(fn: (mask: number) => void): void {
    this.#onMaskChange = fn
  }

  publish<E extends RuntimeEvent>(init: EventInit<E>): void {
    if (this.#byFilter.size === 0) return
    const e = init as unknown as RuntimeEvent
    ;(e as { category: EventCategory }).category = categoryOf(e.type)
    if (e.at === undefined) (e as { at: number }).at = Date.now()
    this.#deliver(this.#byFilter.get(e.type), e)
    this.#deliver(this.#byFilter.get(`${e.category}.*`), e)
    this.#deliver(this.#byFilter.get('*'), e)
  }

  #deliver(set: Set<Listener> | undefined, e: RuntimeEvent): void {
    if (set === undefined) return
    for (const l of set) {
      try {
        l(e)
      } catch {
        this.#listenerErrors++
      }
    }
  }

  #recomputeMask(): void {
    let m = 0
    for (const f of this.#byFilter.keys()) {
      if (f === '*') m = -1
      else m |= categoryBit(categoryOf(f))
    }
    if (m !== this.#mask) {
      this.#mask = m
      this.#onMaskChange?.(m)
    }
  }
}

/** The signal's reason as an Error (AbortSignal's default one is a DOMException, which is one). */
function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason
  return r instanceof Error ? r : new Error(String(r))
}
