/**
 * The sending side of one ring, as every thread uses it: encode an envelope
 * straight into ring memory, publish once per batch, and when the ring is
 * full park frames in a bounded overflow queue that a pump moves into the
 * ring as the consumer frees space.
 *
 * Order: once anything is in the overflow queue, every later frame goes
 * behind it, so frames reach the consumer in the order send() was called.
 * Loss: never silent. A frame either lands in the ring, waits in the
 * overflow queue, or send() throws ERR_RING_FULL (queue at its bound) /
 * ERR_RING_FRAME_TOO_LARGE (can never fit) to the caller.
 */

import { GrainClusterError } from '../../common/errors.js'
import { type EnvelopeWriter, FLAGS, type InternedString, type PayloadWriter, peekRouting } from '../../wire/envelope.js'
import { TELL_RUN_BYTES, TellRunWriter } from '../../wire/tell-run.js'
import { closeRingEntry, RingProducer, ringEntries } from './spsc-ring.js'

export const DEFAULT_MAX_OVERFLOW_FRAMES = 65_536

/**
 * Replies are never refused for a full overflow queue: each answers a call
 * already accepted (so their number is bounded by the calls in flight), and
 * refusing one would leave its caller waiting out its timeout. Asked only
 * once the queue is at its bound, so the hot path never reads the flags.
 */
function isReply(flags: number): boolean {
  return (flags & FLAGS.REPLY) !== 0
}

/** isReply for an encoded frame (not an envelope: not a reply). */
function isReplyFrame(bytes: Uint8Array): boolean {
  const r = peekRouting(bytes, 0, bytes.length)
  return r >= 0 && isReply(r % 65_536)
}
/** Frames committed in one synchronous burst before an early publish. */
const PUBLISH_EVERY_FRAMES = 256

export interface FrameSenderOptions {
  /** Frames that may wait outside the ring before send() throws ERR_RING_FULL. */
  maxOverflowFrames?: number
  /** Called when the ring first fills and frames start to queue. */
  onFull?: (queued: number) => void
  /** Called when the overflow queue has been moved into the ring. */
  onDrained?: () => void
  /**
   * True when the publish may wait for the end of the event-loop turn
   * (setImmediate) instead of the end of the current task (microtask): under
   * load, requests handled in one I/O phase then share one publish and at
   * most one wake-up of the consumer. Asked once per batch.
   */
  deferPublish?: () => boolean
}

export class FrameSender {
  readonly producer: RingProducer
  readonly maxOverflowFrames: number
  #overflow: Uint8Array[] = []
  /** Parallel to #overflow: 0 for one frame, n for a block of n ring-format frames (sendBlock). */
  #overflowBlocks: number[] = []
  #overflowHead = 0
  /** Frames waiting in #overflow (a block counts all of its frames). */
  #backlog = 0
  #publishScheduled = false
  #sincePublish = 0
  #pumping = false
  #closed = false
  #moveTries = 0
  /** Block being filled by send() while the ring is full (see #appendOpen); not yet in #overflow. */
  #open: Uint8Array | null = null
  #openUsed = 0
  #openFrames = 0
  #drainWaiters: (() => void)[] = []
  /** The open tell run (sendTell, sendPidTell), created on first use. */
  #run: TellRunWriter | null = null
  #runBuf = new Uint8Array(0)
  readonly #onFull: ((queued: number) => void) | undefined
  readonly #onDrained: (() => void) | undefined
  readonly #deferPublish: (() => boolean) | undefined

  constructor(sab: SharedArrayBuffer, options: FrameSenderOptions = {}) {
    this.producer = new RingProducer(sab)
    this.maxOverflowFrames = options.maxOverflowFrames ?? DEFAULT_MAX_OVERFLOW_FRAMES
    this.#onFull = options.onFull
    this.#onDrained = options.onDrained
    this.#deferPublish = options.deferPublish
  }

  /** Frames waiting outside the ring. */
  get backlog(): number {
    return this.#backlog
  }

  /** True when nothing waits: no backlog, no open tell run, and the consumer has read every frame in the ring. */
  get idle(): boolean {
    return this.#nothingQueued() && !this.#runOpen() && this.producer.consumerCaughtUp()
  }

  get maxFrameBytes(): number {
    return this.producer.maxFrameBytes
  }

  /** True when no frame waits outside the ring (queued or in the open block): a new one may go straight in. */
  #nothingQueued(): boolean {
    return this.#overflowHead === this.#overflow.length && this.#open === null
  }

  /** Encode `w` into the ring. Throws the writer's encode errors unchanged. Replies may queue past the bound (isReply). */
  send(w: EnvelopeWriter): void {
    this.#closeOpenRun()
    const p = this.producer
    // With a backlog, try to move it into the ring on every MOVE_EVERY-th
    // send only: a block needs a large contiguous room, so each try re-reads
    // the consumer's head, a cache line the consumer keeps writing. Frames
    // sent meanwhile go behind the backlog, in order.
    if (this.#nothingQueued() || ((++this.#moveTries & (MOVE_EVERY - 1)) === 0 && this.#moveOverflow())) {
      let room = p.contiguousRoom()
      let n = room > 0 ? w.writeInto(p.data, p.frameOffset(), room) : -1
      // A larger frame than the first look allowed for: look at the head again.
      if (n < 0 && room < p.maxFrameBytes) {
        room = p.contiguousRoom(p.maxFrameBytes + 4)
        n = room > 0 ? w.writeInto(p.data, p.frameOffset(), room) : -1
      }
      if (n >= 0) {
        p.commit(n)
        this.#committed()
        return
      }
    }
    // The ring is full (or has a backlog ahead of this frame): encode into
    // the open overflow block, which later enters the ring in one copy.
    if (this.#appendOpen(w)) return
    // Slow path: the frame did not fit in the contiguous room (ring nearly
    // full, near the wrap point, or a large frame): encode it on the side.
    const n = w.writeInto(scratch, 0, scratch.length)
    const bytes = n >= 0 ? scratch.slice(0, n) : w.toBytes(scratch.length * 2)
    if (bytes.length > p.maxFrameBytes) {
      throw new GrainClusterError('ERR_RING_FRAME_TOO_LARGE', `frame of ${bytes.length} bytes exceeds the ring's maximum of ${p.maxFrameBytes}`, {
        size: bytes.length,
        limit: p.maxFrameBytes,
      })
    }
    this.#sendOwned(bytes)
  }

  /** Copy an already-encoded frame (routing without re-encoding). */
  sendBytes(src: Uint8Array, off: number, len: number): void {
    this.#closeOpenRun()
    const p = this.producer
    if (this.#nothingQueued() || this.#moveOverflow()) {
      let at = p.reserve(len) // throws ERR_RING_FRAME_TOO_LARGE
      if (at < 0) {
        // Make what we wrote visible so the consumer can free space, then retry once.
        p.publish()
        at = p.reserve(len)
      }
      if (at >= 0) {
        // A whole-array source needs no view (relays pass whole envelopes).
        p.data.set(off === 0 && len === src.length ? src : src.subarray(off, off + len), at)
        p.commit(len)
        this.#committed()
        return
      }
    } else if (len > p.maxFrameBytes) {
      p.reserve(len) // throws the typed error
    }
    this.#enqueue(src.slice(off, off + len))
  }

  /**
   * A block of `frames` ring-format entries (RingProducer.writeBlock) in one
   * copy, or (ring full, or a backlog ahead of it) queued whole in the
   * overflow. False, having taken nothing, when the overflow cannot take all
   * of its frames: the caller then sends them one by one, and each one that
   * does not fit gets its own ERR_RING_FULL.
   */
  sendBlock(src: Uint8Array, off: number, len: number, frames: number): boolean {
    this.#closeOpenRun()
    // Larger than one side of the ring: only its frames one by one can get in.
    if (len > this.producer.maxFrameBytes + 4) return false
    if (this.#writeBlock(src, off, len, frames)) return true
    if (this.#closed || this.#backlog + frames > this.maxOverflowFrames) return false
    this.#push(src.slice(off, off + len), frames)
    return true
  }

  /** A block straight into the ring, when nothing queues ahead of it and it fits now. */
  #writeBlock(src: Uint8Array, off: number, len: number, frames: number): boolean {
    if (!this.#nothingQueued() && !this.#moveOverflow()) return false
    const p = this.producer
    let ok = p.writeBlock(src, off, len, frames)
    if (!ok) {
      p.publish()
      ok = p.writeBlock(src, off, len, frames)
    }
    if (!ok) return false
    this.#sincePublish += frames - 1
    this.#committed()
    return true
  }

  /**
   * Add a tell to the open tell run of this ring (wire/tell-run.ts),
   * opening one if needed: runs of tells of one kind and method cost the
   * ring ~20 bytes a tell instead of a whole envelope. The run enters the
   * ring before any other frame sent here and at the next flush, so it
   * keeps its place in the send order. It counts as its tells against
   * maxOverflowFrames: ERR_RING_FULL when the ring is full and that many
   * already wait. False, having taken nothing, when the tell does not fit
   * in a run (send it as an envelope) or the ring is closed.
   */
  sendTell(kind: InternedString, messageType: number, schemaVersion: number, key: string, payload: PayloadWriter): boolean {
    return this.#sendRun(kind, messageType, schemaVersion, key, -1, payload)
  }

  /**
   * As sendTell, for a grain's tell by PID (a worker's ring to the main
   * thread): the entry names the PID by `index`, which an earlier
   * PID_REQUEST on this ring defined (wire/tell-run.ts, PID runs).
   */
  sendPidTell(kind: InternedString, messageType: number, schemaVersion: number, index: number, payload: PayloadWriter): boolean {
    return this.#sendRun(kind, messageType, schemaVersion, '', index, payload)
  }

  /** A tell into the open run: keyed by `key`, or (index ≥ 0) by a PID index in a PID run. */
  #sendRun(kind: InternedString, messageType: number, schemaVersion: number, key: string, index: number, payload: PayloadWriter): boolean {
    const byPid = index >= 0
    if (this.#closed) return false
    let r = this.#run
    if (r === null) {
      r = this.#run = new TellRunWriter()
      this.#runBuf = new Uint8Array(Math.min(TELL_RUN_BYTES, (this.producer.maxFrameBytes + 4) & ~3))
    }
    for (let tries = 0; tries < 2; tries++) {
      if (r.entries > 0 && (tries > 0 || !r.isFor(kind, messageType, schemaVersion, byPid) || this.#backlog + r.entries >= this.maxOverflowFrames)) this.#closeRun(r)
      if (r.entries === 0) {
        if (this.#backlog >= this.maxOverflowFrames) throw this.#ringFull()
        if (!r.open(this.#runBuf, 0, this.#runBuf.length, kind, messageType, schemaVersion, 0, byPid)) return false
        this.#schedulePublish()
      }
      if (byPid ? r.appendIndex(index, payload) : r.append(key, payload)) return true
      // Too large even for an empty run: a frame of its own.
      if (r.entries === 0) return false
    }
    return false
  }

  #runOpen(): boolean {
    return this.#run !== null && this.#run.entries > 0
  }

  /** Close the open tell run (if any): any other frame, a flush or close() goes behind it. */
  #closeOpenRun(): void {
    if (this.#runOpen()) this.#closeRun(this.#run!)
  }

  /**
   * Put the open run into the ring, or behind the overflow queue. Never
   * refused: its tells were admitted one by one against the bound.
   */
  #closeRun(r: TellRunWriter): void {
    const frames = r.entries
    const len = r.finish()
    if (this.#writeBlock(this.#runBuf, 0, len, frames)) return
    this.#push(this.#runBuf.slice(0, len), frames)
  }

  #ringFull(): GrainClusterError {
    return new GrainClusterError('ERR_RING_FULL', `ring full and ${this.backlog} frames already queued (limit ${this.maxOverflowFrames})`, {
      limit: this.maxOverflowFrames,
    })
  }

  #sendOwned(bytes: Uint8Array): void {
    const p = this.producer
    if (this.#nothingQueued()) {
      let at = p.reserve(bytes.length)
      if (at < 0) {
        p.publish()
        at = p.reserve(bytes.length)
      }
      if (at >= 0) {
        p.data.set(bytes, at)
        p.commit(bytes.length)
        this.#committed()
        return
      }
    }
    this.#enqueue(bytes)
  }

  /**
   * Encode `w` as the next entry of the open overflow block (opening one if
   * needed). Under a sustained burst the ring fills and every later frame
   * must queue behind it; one block per OPEN_BLOCK_BYTES replaces an
   * allocation, a queue entry and a separate copy into the ring per frame.
   * False, having queued nothing, when the frame needs a block of its own
   * size (the caller queues it alone) or the queue is at its bound.
   */
  #appendOpen(w: EnvelopeWriter): boolean {
    if (this.#closed || (this.#backlog >= this.maxOverflowFrames && !isReply(w.flags))) return false
    let b = this.#open
    if (b !== null) {
      const n = w.writeInto(b, this.#openUsed + 4, b.length - this.#openUsed - 4)
      if (n >= 0) return this.#openCommit(b, n)
      this.#sealOpen() // full: the frame starts the next block
    }
    b = this.#open = new Uint8Array(Math.min(OPEN_BLOCK_BYTES, this.producer.maxFrameBytes + 4))
    const n = w.writeInto(b, 4, b.length - 4)
    if (n >= 0) return this.#openCommit(b, n)
    this.#open = null
    return false
  }

  #openCommit(b: Uint8Array, n: number): boolean {
    this.#openUsed = closeRingEntry(b, this.#openUsed, n)
    this.#openFrames++
    this.#backlog++
    if (!this.#pumping) this.#startPump()
    return true
  }

  /** Queue the open block (if any) as an ordinary block entry: later entries go behind it. */
  #sealOpen(): void {
    const b = this.#open
    if (b === null) return
    this.#open = null
    this.#overflow.push(b.subarray(0, this.#openUsed))
    this.#overflowBlocks.push(this.#openFrames)
    this.#openUsed = 0
    this.#openFrames = 0
  }

  /**
   * Move queued frames into the ring while they fit; true when the queue is
   * empty. Called from send() so a long synchronous burst keeps the ring fed
   * without waiting for the async pump to get a turn on the event loop.
   */
  #moveOverflow(): boolean {
    const p = this.producer
    const q = this.#overflow
    let moved = false
    for (;;) {
      while (this.#overflowHead < q.length) {
        if (!this.#moveOne(p)) break
        moved = true
      }
      // Everything sealed is in: the open block goes next.
      if (this.#overflowHead < q.length || this.#open === null) break
      this.#sealOpen()
    }
    if (moved) p.publish()
    return this.#overflowHead === q.length
  }

  /** Move the oldest queued entry into the ring; false when it does not fit now. */
  #moveOne(p: RingProducer): boolean {
    const h = this.#overflowHead
    const next = this.#overflow[h]!
    const block = this.#overflowBlocks[h]!
    if (block === 0) {
      const at = p.reserve(next.length)
      if (at < 0) return false
      p.data.set(next, at)
      p.commit(next.length)
    } else if (!p.writeBlock(next, 0, next.length, block)) return false
    this.#overflow[h] = EMPTY
    this.#overflowHead = h + 1
    this.#backlog -= block === 0 ? 1 : block
    return true
  }

  #enqueue(bytes: Uint8Array): void {
    if (this.#closed) throw new GrainClusterError('ERR_WORKER_UNAVAILABLE', 'the ring is closed')
    if (this.backlog >= this.maxOverflowFrames && !isReplyFrame(bytes)) throw this.#ringFull()
    this.#push(bytes, 0)
  }

  /** Queue a frame (blockFrames 0) or a block of frames behind the ring, and start the pump. */
  #push(bytes: Uint8Array, blockFrames: number): void {
    this.#sealOpen() // keeps send order: the open block's frames came first
    this.#overflow.push(bytes)
    this.#overflowBlocks.push(blockFrames)
    this.#backlog += blockFrames === 0 ? 1 : blockFrames
    if (!this.#pumping) this.#startPump()
  }

  #startPump(): void {
    this.#pumping = true
    this.#onFull?.(this.backlog)
    void this.#pump()
  }

  async #pump(): Promise<void> {
    const p = this.producer
    try {
      while (!this.#closed) {
        if (this.#overflowHead === this.#overflow.length) {
          if (this.#open === null) break
          this.#sealOpen()
        }
        if (!this.#moveOne(p)) {
          p.publish()
          // Parks with Atomics.waitAsync; the consumer's release wakes us.
          await p.waitForSpace(this.#overflow[this.#overflowHead]!.length, 50)
          continue
        }
      }
      p.publish()
    } finally {
      this.#overflow = []
      this.#overflowBlocks = []
      this.#overflowHead = 0
      this.#backlog = 0
      this.#open = null
      this.#openUsed = 0
      this.#openFrames = 0
      this.#pumping = false
    }
    if (!this.#closed) this.#onDrained?.()
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const w of waiters) w()
  }

  /** Resolves when the overflow queue is empty (backpressure for producers). */
  whenDrained(): Promise<void> {
    if (!this.#pumping) return Promise.resolve()
    return new Promise((resolve) => this.#drainWaiters.push(resolve))
  }

  /**
   * After each frame: publish now and then inside a long synchronous burst
   * so the consumer works in parallel instead of idling until the ring is
   * full; otherwise once per microtask.
   */
  #committed(): void {
    if (++this.#sincePublish >= PUBLISH_EVERY_FRAMES) {
      this.#sincePublish = 0
      this.producer.publish()
      return
    }
    this.#schedulePublish()
  }

  #schedulePublish(): void {
    if (this.#publishScheduled) return
    this.#publishScheduled = true
    if (this.#deferPublish?.() === true) setImmediate(this.flush)
    else queueMicrotask(this.flush)
  }

  /** Publish everything committed so far (once per batch, not per frame). */
  readonly flush = (): void => {
    // Before the flag drops, so the run's commit does not schedule another flush.
    this.#closeOpenRun()
    this.#publishScheduled = false
    this.#sincePublish = 0
    if (this.producer.unpublished) this.producer.publish()
  }

  /**
   * Stop sending. Returns the frames that never reached the ring so the
   * owner can dead-letter them or fail their callers.
   */
  close(): Uint8Array[] {
    // The open run's tells were accepted: they join the leftovers.
    this.#closeOpenRun()
    this.#sealOpen()
    this.#closed = true
    const left: Uint8Array[] = []
    for (let i = this.#overflowHead; i < this.#overflow.length; i++) {
      const bytes = this.#overflow[i]!
      if (this.#overflowBlocks[i] === 0) left.push(bytes)
      else for (const [at, n] of ringEntries(bytes, 0, bytes.length)) left.push(bytes.subarray(at, at + n))
    }
    this.#overflow = []
    this.#overflowBlocks = []
    this.#overflowHead = 0
    this.#backlog = 0
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const w of waiters) w()
    return left
  }
}

const EMPTY = new Uint8Array(0)
/** send() tries to move a backlog into the ring once per this many calls (a power of two). */
const MOVE_EVERY = 32
/** Size of an open overflow block (send() under a full ring); capped by the ring's largest block. */
const OPEN_BLOCK_BYTES = 32 * 1024
/** Side buffer for frames that do not fit the ring right now (one per thread). */
const scratch = new Uint8Array(64 * 1024)
