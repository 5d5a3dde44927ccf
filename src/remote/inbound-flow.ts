/**
 * Inbound flow control. When the frames remote nodes send pile up in front
 * of a full worker ring, this node stops reading the connection of the
 * node whose frame pushed the backlog over its high-water mark. The
 * kernel's buffers fill and TCP holds the sender back: its transport
 * buffers, then its association defers, and only its own bounded queues
 * drop (with dead letters on the sending side, where the caller can see
 * them). Without this, this node would read on at full speed and
 * dead-letter every frame beyond the overflow bound with ERR_RING_FULL.
 *
 * A pause lasts until the backlog drains when the peer's heartbeats come
 * over a control lane (the transport's second connection, never paused),
 * as Akka's Artery keeps its control stream apart. Without one (turned off,
 * or down) heartbeats wait behind the data on the paused connection, and a
 * worker stuck in a long handler must not make its peers look unreachable:
 * after `maxPauseMs` the connection is read again whatever the backlog, and
 * it is not paused again for as long. Frames that do not fit in that window
 * are dead-lettered as before.
 */

import type { EventStream } from '../observability/event-stream.js'
import type { EventOf } from '../observability/events.js'

/** How often a paused connection checks the backlog, ms. */
const POLL_MS = 2

export interface InboundFlowOptions {
  /** Backlog (frames) at which the sending peer's connection stops being read. */
  highWater: number
  /** Backlog (frames) at or below which paused connections are read again. */
  lowWater: number
  /** Longest pause, ms, where `bounded` says so; then the connection is read for as long before it may pause again. */
  maxPauseMs: number
  /** Whether maxPauseMs applies to `authority` now (false: its heartbeats have a control lane). Default: always. */
  bounded?: (authority: string) => boolean
  /** Frames waiting in the longest overflow queue in front of a worker ring. */
  backlog: () => number
  /** Stop (true) or resume (false) reading the connections of `authority`. */
  setPaused: (authority: string, paused: boolean) => void
  events: EventStream
  now?: () => number
}

type ResumeCause = EventOf<'transport.inbound-resumed'>['cause']

export class InboundFlow {
  readonly #o: InboundFlowOptions
  readonly #now: () => number
  /** Paused authorities and when each pause began. */
  readonly #paused = new Map<string, number>()
  /** Authorities whose last pause hit the limit, and until when they are not paused again. */
  readonly #holdOff = new Map<string, number>()
  #timer: ReturnType<typeof setTimeout> | undefined
  #closed = false

  constructor(o: InboundFlowOptions) {
    if (!(o.lowWater >= 0 && o.lowWater < o.highWater)) throw new RangeError(`inbound flow: lowWater ${o.lowWater} must be ≥ 0 and below highWater ${o.highWater}`)
    this.#o = o
    this.#now = o.now ?? (() => performance.now())
  }

  /** Authorities whose connections are not being read now. */
  get paused(): readonly string[] {
    return [...this.#paused.keys()]
  }

  /** A frame from `authority` was handed on: pause its connection if the backlog reached the high-water mark. */
  afterFrame(authority: string): void {
    const backlog = this.#o.backlog()
    if (backlog < this.#o.highWater || this.#closed || this.#paused.has(authority)) return
    const now = this.#now()
    const until = this.#holdOff.get(authority)
    if (until !== undefined) {
      if (now < until) return
      this.#holdOff.delete(authority)
    }
    this.#paused.set(authority, now)
    this.#o.setPaused(authority, true)
    this.#o.events.publish({
      type: 'transport.inbound-paused',
      authority,
      backlog,
      reason: `${backlog} frames wait for a full worker ring (high water ${this.#o.highWater}): reading from ${authority} stops until ${this.#o.lowWater} or fewer wait${this.#bounded(authority) ? `, for at most ${this.#o.maxPauseMs} ms` : ' (heartbeats go on over the control lane)'}`,
    })
    this.#schedule()
  }

  /** The connection to `authority` went away (a new one starts unpaused). */
  disconnected(authority: string): void {
    const since = this.#paused.get(authority)
    this.#holdOff.delete(authority)
    // Read again anyway: a second connection to the same peer (simultaneous dials) may still be open.
    if (since !== undefined) this.#resume(authority, since, this.#now(), 'disconnected')
  }

  close(): void {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#timer = undefined
    const now = this.#now()
    for (const [authority, since] of [...this.#paused]) this.#resume(authority, since, now, 'closed')
    this.#holdOff.clear()
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#paused.size === 0) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#poll()
    }, POLL_MS)
    this.#timer.unref?.()
  }

  #poll(): void {
    const now = this.#now()
    // Over a snapshot, with the backlog read for each: resuming hands over the
    // frames a pause held back at once, which may pause a connection again.
    for (const [authority, since] of [...this.#paused]) {
      if (this.#paused.get(authority) !== since) continue
      if (this.#o.backlog() <= this.#o.lowWater) this.#resume(authority, since, now, 'drained')
      else if (now - since >= this.#o.maxPauseMs && this.#bounded(authority)) {
        this.#holdOff.set(authority, now + this.#o.maxPauseMs)
        this.#resume(authority, since, now, 'pause-limit')
      }
    }
    this.#schedule()
  }

  #bounded(authority: string): boolean {
    return this.#o.bounded?.(authority) ?? true
  }

  #resume(authority: string, since: number, now: number, cause: ResumeCause): void {
    this.#paused.delete(authority)
    // Reported first: reading again may pause the connection again at once.
    this.#o.events.publish({ type: 'transport.inbound-resumed', authority, cause, pausedMs: now - since, backlog: this.#o.backlog() })
    this.#o.setPaused(authority, false)
  }
}
