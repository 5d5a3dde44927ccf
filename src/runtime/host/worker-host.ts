/**
 * The main thread's side of the grain workers: starts W workers, gives each
 * two rings, routes frames between them, and supervises them.
 *
 *   main ──toWorker ring──► worker w ──toMain ring──► main
 *
 * Routing (main thread, per frame from worker w, never re-encoded):
 *   REPLY   reply_to = 0     → settle the main thread's pending ask
 *   REPLY   reply_to = 1 + v → copy to worker v (a grain-to-grain ask)
 *   CONTROL                  → EventStream
 *   request                  → copy to the worker that owns its partition
 *
 * Supervision: a worker that exits unexpectedly is replaced by a new thread
 * on fresh rings (restart backoff grows on repeated crashes). Everything
 * that was waiting on the dead thread fails with ERR_WORKER_CRASHED: asks
 * from the main thread, grain-to-grain asks forwarded to it, and tells left
 * unread in its ring become DeadLetters. Activations come back on demand.
 */

import { type CallStatsReport, isCallStatsReport } from '../call-stats.js'
import { Worker } from 'node:worker_threads'
import type { RpcCallSettings } from '../../common/rpc-settings.js'
import { fromWire, GrainClusterError, toGrainClusterError } from '../../common/errors.js'
import { parsePid } from '../../common/pid.js'
import { kindKeyOf, messageTypeId as messageTypeIdOf, partitionOf, workerOfPartition } from '../../common/hash.js'
import type { KindDescriptor, MethodSchemas } from '../../grains/kind-registry.js'
import type { EventStream } from '../../observability/event-stream.js'
import type { EventInit, RuntimeEvent } from '../../observability/events.js'
import { CONTROL_TYPES, MAIN_THREAD, MAX_KEY_LENGTH, type PubSubRequest, threadOfWorker, workerOfThread } from '../../wire/control.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString } from '../../wire/envelope.js'
import { prepareErrorReply } from '../../wire/error-frame.js'
import { settleReply } from '../../wire/reply.js'
import { PayloadCopy } from '../../wire/payload-copy.js'
import { PID_INDEX_BYTES, TellRunEntries } from '../../wire/tell-run.js'
import { codecByName, encodeToBytes, type PayloadCodec } from '../../wire/payload-codec.js'
import { FramePump } from '../ring/frame-pump.js'
import { FrameSender } from '../ring/frame-sender.js'
import { createRingBuffer, RingConsumer } from '../ring/spsc-ring.js'
import type { ReleasedRecord } from '../worker/activation.js'
import type { GrainWorkerData, MainToWorker, WorkerToMain } from '../worker/worker-data.js'
import { monotonicMs } from '../../common/deadline.js'
import { PendingCalls } from './pending-calls.js'
import { workerEntry } from './worker-entry.js'

/** One decoder for the thread: constructing one costs more than a short decode. */
const utf8Decoder = new TextDecoder()

export interface WorkerHostOptions {
  workers: number
  partitions: number
  grainModules: string[]
  codec: string
  ringBytes: number
  askTimeoutMs: number
  maxOverflowFrames: number
  spinMicros: number
  /** Ceiling of the adaptive spin, µs (FramePumpOptions.spinMaxMicros). */
  spinMaxMicros: number
  /** ms between the workers' call-stat reports (metrics.workerStatsIntervalMs). */
  callStatsIntervalMs: number
  /** Give up start-up if a worker is not ready by then. */
  startTimeoutMs: number
  events: EventStream
}

/** What the node knows about a kind from the workers' ready reports. */
export interface KindInfo {
  readonly kind: string
  readonly kindBytes: InternedString
  readonly schemaVersion: number
  readonly stateless: boolean
  readonly idleTtlMs: number
  /** Declares snapshot/restore hooks (state hand-off). */
  readonly handoff: boolean
  /** Activation fails instead of starting fresh without the previous owner's snapshot. */
  readonly requiresSnapshot: boolean
  /** RPC defaults the kind declares (defineGrain({ rpc })). */
  readonly rpc: RpcCallSettings | undefined
  /** method name → message type id */
  readonly methods: Map<string, number>
  /** Schema versions the kind serves, ascending (negotiated per peer in the handshake). */
  readonly supportedSchemaVersions: readonly number[]
  /** JSON Schemas of method payloads, by method, that the HTTP/WebSocket fronts check. */
  readonly payloadSchemas: MethodSchemas | undefined
  /** JSON Schemas of method results, by method, that the HTTP/WebSocket fronts write with. */
  readonly resultSchemas: MethodSchemas | undefined
}

/** What the cluster answers a worker that activates a hand-off kind. */
export interface HandoffAnswer {
  outcome: 'record' | 'none' | 'unavailable'
  version?: number
  snapshot?: unknown
  reason?: string
}

type LinkState = 'starting' | 'ready' | 'crashed' | 'stopping' | 'stopped'

class WorkerLink {
  state: LinkState = 'starting'
  thread: Worker | undefined
  threadId = -1
  lastError: string | undefined
  startedAt = 0
  readonly toWorker: SharedArrayBuffer
  readonly toMain: SharedArrayBuffer
  readonly sender: FrameSender
  readonly consumer: RingConsumer
  pump: FramePump | undefined
  /** Grain-to-grain asks routed into this worker: (thread << 32) + correlation id. */
  readonly forwardedAsks = new Set<number>()
  /** PIDs this worker's grains address, by the index its PID_REQUESTs name them with. */
  readonly pidTexts: (string | undefined)[] = []

  constructor(
    readonly index: number,
    ringBytes: number,
    maxOverflowFrames: number,
    events: EventStream,
    deferPublish?: () => boolean,
  ) {
    this.toWorker = createRingBuffer(ringBytes)
    this.toMain = createRingBuffer(ringBytes)
    this.consumer = new RingConsumer(this.toMain)
    this.sender = new FrameSender(this.toWorker, {
      maxOverflowFrames,
      onFull: (queued) =>
        events.publish({ type: 'ring.full', worker: index, direction: 'to-worker', queued, reason: 'worker is not keeping up; frames wait in the bounded overflow queue' }),
      onDrained: () => events.publish({ type: 'ring.drained', worker: index, direction: 'to-worker' }),
      ...(deferPublish === undefined ? {} : { deferPublish }),
    })
  }
}

/**
 * Ceiling of the main thread's adaptive spin, µs. Its spin holds up every
 * socket and HTTP request; a reply from an awake worker takes µs, so a long
 * spin only helps when the worker was parked, and then a wake-up is due
 * anyway.
 */
const MAIN_SPIN_MAX_MICROS = 100
/** The main thread spins for a worker's replies only within this long of its latest call to it. */
const MAIN_SPIN_FOR_CALLS_MS = 1

/** Calls in flight from the main thread from which publishes wait for the end of the loop turn. */
const DEFER_PUBLISH_AT_IN_FLIGHT = 8

const forwardKey = (thread: number, corr: number): number => thread * 0x1_0000_0000 + corr

export class WorkerHost {
  readonly workers: number
  readonly partitions: number
  readonly codec: PayloadCodec
  readonly pending: PendingCalls
  readonly kinds = new Map<string, KindInfo>()
  readonly #o: WorkerHostOptions
  readonly #events: EventStream
  readonly #links: WorkerLink[] = []
  readonly #restarts: number[] = []
  readonly #crashStreak: number[] = []
  readonly #restartTimers = new Set<ReturnType<typeof setTimeout>>()
  /** Int32 word 0: event interest mask; word 1: 1 = route every grain call through the main thread (cluster placement). */
  readonly #interest = new SharedArrayBuffer(8)
  readonly #reader = new EnvelopeReader()
  readonly #writer = new EnvelopeWriter()
  #payloadValue: unknown = undefined
  readonly #encodePayload = (buf: Uint8Array, off: number, max: number): number => this.codec.encodeInto(this.#payloadValue, buf, off, max)
  #closed = false

  constructor(o: WorkerHostOptions) {
    this.#o = o
    this.workers = o.workers
    this.partitions = o.partitions
    this.codec = codecByName(o.codec)
    this.pending = new PendingCalls(o.askTimeoutMs)
    this.#events = o.events
    const interest = new Int32Array(this.#interest)
    Atomics.store(interest, 0, o.events.interestMask)
    o.events.onInterestChange((mask) => Atomics.store(interest, 0, mask))
  }

  /** Start every worker and wait until all have loaded the grain modules. */
  async start(): Promise<void> {
    const ready: Promise<KindDescriptor[]>[] = []
    for (let w = 0; w < this.workers; w++) {
      this.#restarts[w] = 0
      this.#crashStreak[w] = 0
      const link = new WorkerLink(w, this.#o.ringBytes, this.#o.maxOverflowFrames, this.#events, this.#deferPublish)
      this.#links[w] = link
      ready.push(this.#spawn(link))
    }
    let reports: KindDescriptor[][]
    try {
      reports = await Promise.all(ready)
    } catch (e) {
      await this.close(1000)
      throw e
    }
    for (const k of reports[0] ?? []) {
      this.kinds.set(k.kind, {
        kind: k.kind,
        kindBytes: new InternedString(k.kind),
        schemaVersion: k.schemaVersion,
        stateless: k.stateless,
        idleTtlMs: k.idleTtlMs,
        handoff: k.handoff === true,
        requiresSnapshot: k.requiresSnapshot === true,
        rpc: k.rpc,
        methods: new Map(k.methods.map((m) => [m, messageTypeIdOf(m)])),
        supportedSchemaVersions: k.supportedSchemaVersions ?? [k.schemaVersion],
        payloadSchemas: k.payloadSchemas,
        resultSchemas: k.resultSchemas,
      })
    }
  }

  /** Threads of the current workers (tests use it to check restarts). */
  get threadIds(): number[] {
    return this.#links.map((l) => l.threadId)
  }


  restartsOf(w: number): number {
    return this.#restarts[w] ?? 0
  }

  #spawn(link: WorkerLink): Promise<KindDescriptor[]> {
    const o = this.#o
    const entry = workerEntry('worker/worker-main', o.grainModules)
    const data: GrainWorkerData = {
      worker: link.index,
      workers: this.workers,
      partitions: this.partitions,
      grainModules: o.grainModules,
      codec: o.codec,
      toWorker: link.toWorker,
      toMain: link.toMain,
      interest: this.#interest,
      askTimeoutMs: o.askTimeoutMs,
      maxOverflowFrames: o.maxOverflowFrames,
      spinMicros: o.spinMicros,
      spinMaxMicros: o.spinMaxMicros,
      callStatsIntervalMs: o.callStatsIntervalMs,
      ...(entry.tsEntry === undefined ? {} : { tsEntry: entry.tsEntry }),
    }
    const t = new Worker(entry.script, { workerData: data, name: `graincluster-worker-${link.index}` })
    link.thread = t
    link.startedAt = performance.now()
    link.pump = new FramePump(link.consumer, this.#routerFor(link), {
      afterBatch: this.#flushAll,
      // The main thread spins only while it waits for replies: a parked
      // thread's wake-up costs tens of µs, a short spin catches the reply.
      spinMicros: o.spinMicros,
      spinMaxMicros: Math.min(o.spinMaxMicros, MAIN_SPIN_MAX_MICROS), // FramePump keeps it >= spinMicros
      // Only calls this worker will answer: a remote call's reply comes
      // through a socket, and spinning would only hold up the event loop.
      // And only while one of them is fresh: a reply still missing after
      // MAIN_SPIN_FOR_CALLS_MS comes from a handler that waits on something
      // (a timer, a remote grain), and spinning for it would hold up the
      // sockets and timers that something needs.
      spinWhile: () => this.pending.onWorker(link.index) > 0 && monotonicMs() - this.pending.lastCallAt(link.index) < MAIN_SPIN_FOR_CALLS_MS,
      onError: (e) => this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} outbound ring`, reason: toGrainClusterError(e).reason }),
    })
    link.pump.start()

    return new Promise<KindDescriptor[]>((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => {
        if (settled) return
        settled = true
        reject(new GrainClusterError('ERR_WORKER_UNAVAILABLE', `worker ${link.index} did not start within ${o.startTimeoutMs} ms`, { worker: link.index }))
      }, o.startTimeoutMs)
      t.on('message', (m: WorkerToMain) => {
        if (m.type === 'ready') {
          link.threadId = m.threadId
          link.state = 'ready'
          this.#events.publish({ type: 'worker.started', worker: link.index, threadId: m.threadId, restarts: this.#restarts[link.index] ?? 0 })
          if (!settled) {
            settled = true
            clearTimeout(timer)
            resolve(m.kinds)
          }
        } else if (m.type === 'fatal') {
          const err = fromWire(m.error)
          link.lastError = err.reason
          if (!settled) {
            settled = true
            clearTimeout(timer)
            reject(err)
          }
        }
      })
      t.on('error', (e) => {
        link.lastError = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
      })
      t.on('exit', (code) => {
        clearTimeout(timer)
        if (!settled) {
          settled = true
          reject(new GrainClusterError('ERR_WORKER_UNAVAILABLE', `worker ${link.index} exited during start-up (code ${code}): ${link.lastError ?? 'no error reported'}`, { worker: link.index }))
        }
        this.#onExit(link, code)
      })
    })
  }

  #onExit(link: WorkerLink, code: number): void {
    const expected = link.state === 'stopping' || link.state === 'stopped' || this.#closed
    // Replies the worker published before it died are still good.
    link.pump?.drainNow()
    void link.pump?.stop()
    if (expected) {
      link.state = 'stopped'
      return
    }
    const wasReady = link.state === 'ready'
    link.state = 'crashed'
    const reason = link.lastError ?? `worker thread exited with code ${code}`
    const w = link.index
    const crashed = (c: { kind?: string; key?: string; method?: string }): GrainClusterError =>
      new GrainClusterError('ERR_WORKER_CRASHED', `worker ${w} crashed while the call was in flight: ${reason}`, { ...c, worker: w })

    let failed = this.pending.failWorker(w, crashed)
    // Grain-to-grain asks that were routed into the dead worker.
    for (const fk of link.forwardedAsks) {
      const thread = Math.floor(fk / 0x1_0000_0000)
      const corr = fk % 0x1_0000_0000
      this.#sendErrorReply(thread, corr, crashed({}))
      failed++
    }
    link.forwardedAsks.clear()
    // Tells the worker never read: DeadLetters, so nothing vanishes silently.
    const leftovers = link.sender.close()
    const deadLetter = (bytes: Uint8Array, off: number, len: number): void => this.#deadLetterFrame(bytes, off, len, w, reason)
    for (const f of leftovers) deadLetter(f, 0, f.length)
    new RingConsumer(link.toWorker).drain(deadLetter, Number.MAX_SAFE_INTEGER)

    this.#events.publish({ type: 'worker.crashed', worker: w, reason, failedCalls: failed })
    if (this.#closed) return

    // Restart on fresh rings at once, so new messages queue in the new ring
    // while the thread starts; back off when the worker keeps crashing.
    const lived = performance.now() - link.startedAt
    this.#crashStreak[w] = wasReady && lived > 30_000 ? 1 : (this.#crashStreak[w] ?? 0) + 1
    const streak = this.#crashStreak[w]
    const delayMs = streak <= 1 ? 0 : Math.min(100 * 2 ** (streak - 2), 5_000)
    const next = new WorkerLink(w, this.#o.ringBytes, this.#o.maxOverflowFrames, this.#events, this.#deferPublish)
    this.#links[w] = next
    const timer = setTimeout(() => {
      this.#restartTimers.delete(timer)
      if (this.#closed) return
      this.#restarts[w] = (this.#restarts[w] ?? 0) + 1
      this.#events.publish({ type: 'worker.restarted', worker: w, restarts: this.#restarts[w], delayMs })
      this.#spawn(next).catch((e: unknown) => {
        // A worker that cannot even start again stays down until the next
        // crash-restart cycle; calls to it time out or fail on send.
        next.lastError = toGrainClusterError(e).reason
      })
    }, delayMs)
    this.#restartTimers.add(timer)
  }

  /** Walks the entries of one run at a time (a crashed worker's leftovers, a worker's PID or keyed run; never nested). */
  readonly #runEntries = new TellRunEntries()

  #deadLetterFrame(bytes: Uint8Array, off: number, len: number, worker: number, reason: string): void {
    const r = this.#reader
    try {
      r.reset(bytes, off, len)
      if ((r.flags & (FLAGS.REPLY | FLAGS.CONTROL | FLAGS.ASK)) !== 0) return // asks/replies are failed via their callers
      const deadLetter = (key: string): void =>
        this.#events.publish({ type: 'deadletter', kind: r.kind(), key, messageType: r.messageType, code: 'ERR_WORKER_CRASHED', reason: `worker ${worker} crashed before reading the message: ${reason}`, worker })
      if ((r.flags & FLAGS.TELL_RUN) === 0) return deadLetter(r.key())
      const entries = this.#runEntries.reset(r.buf, r.payloadOff, r.payloadLen)
      while (entries.next()) deadLetter(r.keyAt(entries.keyOff, entries.keyLen))
      if (entries.error !== undefined) throw new Error(entries.error)
    } catch {
      this.#events.publish({ type: 'frame.malformed', source: `worker ${worker} ring after crash`, reason: 'unreadable frame' })
    }
  }

  /**
   * Several calls in flight means load: let the requests of one event-loop
   * turn share a publish (and a worker wake-up). A lone call keeps the
   * microtask publish and its latency.
   */
  readonly #deferPublish = (): boolean => this.pending.size >= DEFER_PUBLISH_AT_IN_FLIGHT

  readonly #flushAll = (): void => {
    for (const l of this.#links) l.sender.flush()
  }

  #routerFor(link: WorkerLink): (data: Uint8Array, off: number, len: number) => void {
    const from = link.index
    const r = this.#reader
    return (data, off, len) => {
      try {
        r.reset(data, off, len)
      } catch (e) {
        this.#events.publish({ type: 'frame.malformed', source: `worker ${from} outbound ring`, reason: toGrainClusterError(e).reason })
        return
      }
      const flags = r.flags
      if ((flags & FLAGS.REPLY) !== 0) {
        if (r.replyTo === MAIN_THREAD) this.#settle(r)
        else {
          link.forwardedAsks.delete(forwardKey(r.replyTo, r.correlationId))
          const target = this.#links[workerOfThread(r.replyTo)]
          if (target !== undefined && target.state !== 'crashed') this.#forward(target, data, off, len)
        }
      } else if ((flags & FLAGS.CONTROL) !== 0) {
        if (r.messageType === CONTROL_TYPES.EVENT) this.#publishWorkerEvent(r.payload())
        else if (r.messageType === CONTROL_TYPES.PID_REQUEST) this.#onPidRequest(link, r)
        else if (r.messageType === CONTROL_TYPES.WRITABLE_REQUEST) this.#onWritableRequest(link, r)
        else if (r.messageType === CONTROL_TYPES.PUBSUB_REQUEST) this.#onPubSubRequest(link, r)
        else if (r.messageType === CONTROL_TYPES.CALL_STATS) this.#onCallStats(link, r)
        else this.#onHandoffControl(link, r)
      } else if ((flags & FLAGS.PID_RUN) !== 0) this.#onPidRun(link, r)
      else if ((flags & FLAGS.TELL_RUN) !== 0) this.#onKeyedRun(link, r)
      else this.#routeRequest(from, r, data, off, len)
    }
  }

  #routeRequest(from: number, r: EnvelopeReader, data: Uint8Array, off: number, len: number): void {
    const isAsk = (r.flags & FLAGS.ASK) !== 0
    if (r.partition >= this.partitions) {
      this.#events.publish({ type: 'frame.malformed', source: `worker ${from} outbound ring`, reason: `partition ${r.partition} out of range` })
      if (isAsk) this.#sendErrorReply(r.replyTo, r.correlationId, new GrainClusterError('ERR_FRAME_MALFORMED', `partition ${r.partition} out of range`))
      return
    }
    if (this.placeRequest !== undefined && this.onPidRequest !== undefined) {
      // In a cluster the key may belong to another node: route it there by PID.
      let pid: string | undefined
      try {
        pid = this.placeRequest(r.kind(), r.key())
      } catch (e) {
        const err = toGrainClusterError(e, 'ERR_AUTHORITY_UNREACHABLE')
        if (isAsk) this.#sendErrorReply(r.replyTo, r.correlationId, err)
        else this.#events.publish({ type: 'deadletter', kind: safe(() => r.kind()), key: safe(() => r.key()), messageType: r.messageType, code: err.code, reason: err.reason })
        return
      }
      if (pid !== undefined) {
        this.onPidRequest(pid, data.subarray(off, off + len))
        return
      }
    }
    const target = this.#links[workerOfPartition(r.partition, this.workers)]!
    if (this.#released.size > 0) this.#untombIfReleased(target, safe(() => r.kind()), safe(() => r.key()))
    const replyTo = r.replyTo
    const corr = r.correlationId
    try {
      if (isAsk) target.forwardedAsks.add(forwardKey(replyTo, corr))
      this.#forward(target, data, off, len)
    } catch (e) {
      const err = toGrainClusterError(e, 'ERR_RING_FULL')
      if (isAsk) {
        target.forwardedAsks.delete(forwardKey(replyTo, corr))
        this.#sendErrorReply(replyTo, corr, err)
      } else {
        this.#events.publish({ type: 'deadletter', kind: safe(() => r.kind()), key: safe(() => r.key()), messageType: r.messageType, code: err.code, reason: err.reason, worker: target.index })
      }
    }
  }

  #forward(target: WorkerLink, data: Uint8Array, off: number, len: number): void {
    target.sender.sendBytes(data, off, len)
  }

  /** Set by the node when it collects metrics: worker `worker`'s report of its grains' calls and waiting calls (runtime/call-stats.ts). */
  onCallStats: ((worker: number, report: CallStatsReport) => void) | undefined

  #onCallStats(link: WorkerLink, r: EnvelopeReader): void {
    let report: unknown
    try {
      report = this.codec.decode(r.buf, r.payloadOff, r.payloadLen)
    } catch (e) {
      report = e
    }
    if (!isCallStatsReport(report)) {
      this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} call stats`, reason: 'not a call stats report' })
      return
    }
    this.onCallStats?.(link.index, report)
  }

  /**
   * Set by the node when it is in a cluster: routes a grain call a worker
   * addressed by PID. `envelope` may be a view of ring memory: the handler
   * may patch it in place during the call, and copies what it keeps.
   */
  onPidRequest: ((pid: string, envelope: Uint8Array) => void) | undefined

  /**
   * Set by the node when it is in a cluster: routes a grain's tell by PID
   * from a PID run, its payload buf[off, off + len) (a view of ring memory,
   * valid during the call).
   */
  onPidTell: ((pid: string, messageType: number, schemaVersion: number, buf: Uint8Array, off: number, len: number) => void) | undefined

  /**
   * Set by the node when it is in a cluster: the PID of the owner of
   * kind/key when that is another node, undefined when it is this one.
   * May throw (minority side, not Up) to refuse the call.
   */
  placeRequest: ((kind: string, key: string) => string | undefined) | undefined

  /**
   * Make workers send every grain-to-grain call through the main thread
   * (no same-worker short cut), so cluster placement decides where it goes.
   */
  routeCallsViaMain(on: boolean): void {
    Atomics.store(new Int32Array(this.#interest), 1, on ? 1 : 0)
  }

  /**
   * PID_REQUEST (control.ts): [u16 index][u16 text length][PID UTF-8][request
   * envelope]. The text comes with an index's first use only; later requests
   * name the PID by its index into the worker link's table.
   */
  #onPidRequest(link: WorkerLink, r: EnvelopeReader): void {
    const buf = r.buf
    const at = r.payloadOff
    const n = r.payloadLen
    const index = at >= 0 && n >= 4 ? buf[at]! | (buf[at + 1]! << 8) : -1
    const textLen = index >= 0 ? buf[at + 2]! | (buf[at + 3]! << 8) : 0
    const whole = index >= 0 && 4 + textLen <= n
    let pid: string | undefined
    if (whole) {
      if (textLen > 0) link.pidTexts[index] = pid = utf8Decoder.decode(buf.subarray(at + 4, at + 4 + textLen))
      else pid = link.pidTexts[index]
    }
    if (pid === undefined) {
      const reason = whole ? `PID index ${index} was never defined` : 'truncated PID request'
      this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} PID request`, reason })
      // An ask must not wait out its timeout for a call that went nowhere.
      if (whole) {
        try {
          const req = this.#relayReader.reset(buf, at + 4 + textLen, n - 4 - textLen)
          if ((req.flags & FLAGS.ASK) !== 0) this.sendErrorReply(req.replyTo, req.correlationId, new GrainClusterError('ERR_FRAME_MALFORMED', `grain call by PID: ${reason}`))
        } catch {
          // Not an envelope either: nothing to answer.
        }
      }
      return
    }
    // A view of ring memory, valid during the call (see onPidRequest).
    const envelope = buf.subarray(at + 4 + textLen, at + n)
    if (this.onPidRequest !== undefined) {
      this.onPidRequest(pid, envelope)
      return
    }
    const req = this.#relayReader.reset(envelope, 0, envelope.length)
    const err = new GrainClusterError('ERR_CONFIG_MISSING', `grain call to ${pid}: this node was started without cluster options, so PIDs cannot be routed`, { pid })
    if ((req.flags & FLAGS.ASK) !== 0) this.sendErrorReply(req.replyTo, req.correlationId, err)
    else this.#events.publish({ type: 'deadletter', kind: req.kind(), key: req.key(), messageType: req.messageType, code: err.code, reason: err.reason })
  }

  /**
   * A PID run (wire/tell-run.ts): a grain's tells by PID, each entry naming
   * its PID by the index an earlier PID_REQUEST on this ring defined. An
   * entry that names no defined PID is reported and skipped; so is the rest
   * of a run whose framing breaks (the entries before it were good).
   */
  #onPidRun(link: WorkerLink, r: EnvelopeReader): void {
    const buf = r.buf
    const messageType = r.messageType
    const schemaVersion = r.schemaVersion
    const it = this.#runEntries.reset(buf, r.payloadOff, r.payloadLen)
    while (it.next()) {
      const at = it.keyOff
      const index = it.keyLen === PID_INDEX_BYTES ? buf[at]! | (buf[at + 1]! << 8) : -1
      const pid = index >= 0 ? link.pidTexts[index] : undefined
      if (pid === undefined) {
        const reason = index < 0 ? `PID run entry has a ${it.keyLen}-byte key, not a PID index` : `PID index ${index} was never defined`
        this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} PID run`, reason })
      } else if (this.onPidTell !== undefined) this.onPidTell(pid, messageType, schemaVersion, buf, it.payloadOff, it.payloadLen)
      else {
        const err = new GrainClusterError('ERR_CONFIG_MISSING', `grain call to ${pid}: this node was started without cluster options, so PIDs cannot be routed`, { pid })
        this.#events.publish({ type: 'deadletter', kind: safe(() => r.kind()), key: safe(() => parsePid(pid).key), messageType, code: err.code, reason: err.reason })
      }
    }
    if (it.error !== undefined) this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} PID run`, reason: it.error })
  }

  /**
   * A keyed tell run from a worker: a grain's ctx.tell(kind, key) calls that
   * its worker does not serve itself (another worker's partition, or a
   * cluster that places the key). Each entry goes where its key belongs, as
   * #routeRequest sends an envelope: to the owning node through onPidTell,
   * or into the open run of the local worker that owns its partition.
   */
  #onKeyedRun(link: WorkerLink, r: EnvelopeReader): void {
    const source = `worker ${link.index} tell run`
    let kind: string
    try {
      kind = r.kind()
    } catch (e) {
      this.#events.publish({ type: 'frame.malformed', source, reason: toGrainClusterError(e).reason })
      return
    }
    const info = this.kindInfo(kind)
    if (info === undefined) {
      this.#events.publish({ type: 'frame.malformed', source, reason: `unknown grain kind "${kind}"` })
      return
    }
    const buf = r.buf
    const messageType = r.messageType
    const schemaVersion = r.schemaVersion
    const copy = this.#runPayload
    const it = this.#runEntries.reset(buf, r.payloadOff, r.payloadLen)
    try {
      while (it.next()) {
        let key: string
        try {
          key = r.keyAt(it.keyOff, it.keyLen)
        } catch (e) {
          this.#events.publish({ type: 'frame.malformed', source, reason: toGrainClusterError(e).reason })
          continue
        }
        if (this.placeRequest !== undefined && this.onPidTell !== undefined) {
          let pid: string | undefined
          try {
            pid = this.placeRequest(kind, key)
          } catch (e) {
            const err = toGrainClusterError(e, 'ERR_AUTHORITY_UNREACHABLE')
            this.#events.publish({ type: 'deadletter', kind, key, messageType, code: err.code, reason: err.reason })
            continue
          }
          if (pid !== undefined) {
            this.onPidTell(pid, messageType, schemaVersion, buf, it.payloadOff, it.payloadLen)
            continue
          }
        }
        const partition = partitionOf(key, this.partitions)
        const target = this.#links[workerOfPartition(partition, this.workers)]!
        if (this.#released.size > 0) this.#untombIfReleased(target, kind, key)
        copy.from(buf, it.payloadOff, it.payloadLen)
        try {
          if (!target.sender.sendTell(info.kindBytes, messageType, schemaVersion, key, copy.write)) {
            // Too large for a run (or the ring is closed): an envelope of its own.
            const w = this.#runTellWriter.reset()
            w.kind = info.kindBytes
            w.key = key
            w.partition = partition
            w.messageType = messageType
            w.schemaVersion = schemaVersion
            w.payloadWriter = copy.write
            target.sender.send(w)
          }
        } catch (e) {
          const err = toGrainClusterError(e, 'ERR_RING_FULL')
          this.#events.publish({ type: 'deadletter', kind, key, messageType, code: err.code, reason: err.reason, worker: target.index })
        }
      }
    } finally {
      copy.clear()
    }
    if (it.error !== undefined) this.#events.publish({ type: 'frame.malformed', source, reason: it.error })
  }
  readonly #runPayload = new PayloadCopy()
  readonly #runTellWriter = new EnvelopeWriter()

  /**
   * A grain's request to a service of the main thread (ctx.whenWritable,
   * ctx.publish): check its reply route, decode it, answer its worker with
   * what `serve` resolves to (the payload codec; undefined = an empty
   * reply) or the typed error it rejects with.
   */
  #onServiceRequest(link: WorkerLink, r: EnvelopeReader, what: string, serve: (msg: Record<string, unknown>) => Promise<unknown>): void {
    const thread = r.replyTo
    const corr = r.correlationId
    if ((r.flags & FLAGS.ASK) === 0 || thread !== threadOfWorker(link.index)) {
      this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} control frame`, reason: `${what} request from thread ${thread} without a reply route to it` })
      return
    }
    let answer: Promise<unknown>
    try {
      const msg = this.codec.decode(r.buf, r.payloadOff, r.payloadLen)
      if (typeof msg !== 'object' || msg === null) throw new GrainClusterError('ERR_FRAME_MALFORMED', `${what} request without its fields`)
      answer = serve(msg as Record<string, unknown>)
    } catch (e) {
      answer = Promise.reject(toGrainClusterError(e, 'ERR_FRAME_MALFORMED'))
    }
    answer.then(
      (value) => {
        if (link.state === 'crashed' || link.state === 'stopped') return // the asking worker died; its wait died with it
        try {
          const w = this.#writer.reset()
          w.flags = FLAGS.REPLY
          w.correlationId = corr
          w.replyTo = thread
          if (value !== undefined) w.payloadBytes = encodeToBytes(this.codec, value)
          link.sender.send(w)
        } catch {
          // The grain's own timer reports it.
        }
      },
      (e: unknown) => this.#sendErrorReply(thread, corr, toGrainClusterError(e)),
    )
  }

  #onWritableRequest(link: WorkerLink, r: EnvelopeReader): void {
    this.#onServiceRequest(link, r, 'writable', async (msg) => {
      if (typeof msg.pid !== 'string') throw new GrainClusterError('ERR_FRAME_MALFORMED', 'writable request without a PID')
      const pid = msg.pid
      if (this.onWritableRequest === undefined) {
        throw new GrainClusterError('ERR_CONFIG_MISSING', `whenWritable(${pid}): this node was started without cluster options, so PIDs cannot be routed`, { pid })
      }
      await this.onWritableRequest(pid, msg.timeoutMs === undefined ? undefined : (msg.timeoutMs as number))
      return undefined
    })
  }

  #onPubSubRequest(link: WorkerLink, r: EnvelopeReader): void {
    this.#onServiceRequest(link, r, 'pubsub', async (msg) => {
      const serve = this.onPubSubRequest
      if (typeof msg.topic !== 'string') throw new GrainClusterError('ERR_FRAME_MALFORMED', 'pubsub request without a topic')
      if (serve === undefined) throw new GrainClusterError('ERR_CONFIG_MISSING', 'this worker host has no PubSub')
      if (msg.op === 'publish') return serve({ op: 'publish', topic: msg.topic, payload: msg.payload })
      const { kind, key, method } = msg
      if ((msg.op !== 'subscribe' && msg.op !== 'unsubscribe') || typeof kind !== 'string' || typeof key !== 'string' || typeof method !== 'string') {
        throw new GrainClusterError('ERR_FRAME_MALFORMED', 'pubsub request with an unknown op or without its subscriber')
      }
      return serve({ op: msg.op, topic: msg.topic, kind, key, method })
    })
  }

  /** Set by the node: a grain's ctx.publish / subscribe / unsubscribe, run on node.pubsub. */
  onPubSubRequest: ((req: PubSubRequest) => Promise<unknown>) | undefined

  /**
   * Set by the node: resolves once the node may send to `pid` (GrainNode.whenWritable),
   * for grains' ctx.whenWritable. Unset: such calls fail with ERR_CONFIG_MISSING.
   */
  onWritableRequest: ((pid: string, timeoutMs: number | undefined) => Promise<void>) | undefined

  /** Hand a reply envelope to the worker thread its reply-to names (bytes are copied). */
  deliverToThread(reply: Uint8Array): void {
    const r = this.#relayReader.reset(reply, 0, reply.length)
    if (r.replyTo === MAIN_THREAD) {
      this.#settle(r)
      return
    }
    const link = this.#links[workerOfThread(r.replyTo)]
    if (link === undefined || link.state === 'crashed') return // the asking worker died; its ask died with it
    link.sender.sendBytes(reply, 0, reply.length)
  }

  /** Answer thread `thread`'s ask `corr` with a typed error (main thread included). */
  sendErrorReply(thread: number, corr: number, err: GrainClusterError): void {
    this.#sendErrorReply(thread, corr, err)
  }

  #sendErrorReply(thread: number, corr: number, err: GrainClusterError): void {
    if (thread === MAIN_THREAD) {
      const c = this.pending.take(corr)
      c?.reject(err)
      return
    }
    const link = this.#links[workerOfThread(thread)]
    if (link === undefined || link.state === 'crashed') return
    const w = prepareErrorReply(this.#writer, corr, thread, err)
    try {
      link.sender.send(w)
    } catch {
      // The asking grain's own timeout reports it.
    }
  }

  #settle(r: EnvelopeReader): void {
    const c = this.pending.take(r.correlationId)
    if (c === undefined) return // timed out already
    if (c.raw !== undefined) c.raw(r)
    else if ((r.flags & FLAGS.ERROR) !== 0) settleReply(r, this.codec, c)
    else {
      // A success reply that rejects could not be decoded here (spec 6.4: recorded, call failed).
      const reject = c.reject
      settleReply(r, this.codec, {
        kind: c.kind,
        key: c.key,
        method: c.method,
        resolve: c.resolve,
        reject: (err) => {
          this.#serializationFailed(c.kind, c.key, c.method, 'decode', 'reply', err)
          reject(err)
        },
      })
    }
  }

  #serializationFailed(kind: string, key: string, method: string, direction: 'encode' | 'decode', message: 'request' | 'reply', err: GrainClusterError): void {
    this.#events.publish({ type: 'rpc.serialization-failed', kind, key, method, direction, message, code: err.code, reason: err.reason })
  }

  /**
   * Route a request envelope that came from another node to the worker that
   * owns its partition, as the same bytes. For an ask, the correlation id and
   * reply-to are patched in place so the worker answers this main thread;
   * `onReply` then gets the reply envelope with the caller's correlation id
   * restored, ready to send back (never re-encoded). Throws ERR_FRAME_MALFORMED
   * for bytes that are not a valid request envelope. `validated`: a reader
   * the caller already reset on exactly `bytes` (saves validating twice).
   */
  relayRequest(bytes: Uint8Array, onReply: (reply: Uint8Array) => void, timeoutMs?: number, validated?: EnvelopeReader): void {
    const r = validated ?? this.#relayReader.reset(bytes, 0, bytes.length)
    // A tell run comes only from this node's own tell(): a peer or a worker never sends one.
    if ((r.flags & (FLAGS.REPLY | FLAGS.CONTROL | FLAGS.TELL_RUN)) !== 0) throw new GrainClusterError('ERR_FRAME_MALFORMED', 'a relayed envelope must be a request (not a reply, control frame or tell run)')
    if (r.partition >= this.partitions) throw new GrainClusterError('ERR_FRAME_MALFORMED', `partition ${r.partition} out of range (this node has ${this.partitions}: partitions must match cluster-wide)`)
    if (this.#closed) throw new GrainClusterError('ERR_NODE_CLOSED', 'the node is closed')
    const link = this.#links[workerOfPartition(r.partition, this.workers)]!
    // Leaving: this node serves nothing new; calls follow placement to the successors.
    const redirect = this.redirectInbound && this.placeRequest !== undefined && this.onPidRequest !== undefined ? this.placeRequest(r.kind(), r.key()) : undefined
    // kind/key are decoded only when the node refuses (it rarely does).
    const refusal = redirect === undefined && this.mayServe !== undefined && !this.mayServe() ? this.servingRefusal?.(r.kind(), r.key()) : undefined
    if ((r.flags & FLAGS.ASK) === 0) {
      if (redirect !== undefined) this.onPidRequest!(redirect, bytes.slice())
      else if (refusal !== undefined) throw refusal
      else link.sender.sendBytes(bytes, 0, bytes.length)
      return
    }
    const callerCorr = r.correlationId
    const callerReplyTo = r.replyTo
    const info = { kind: r.kind(), key: r.key(), method: `#${r.messageType}`, worker: link.index }
    const corr = this.pending.nextId()
    if (!r.patchRouting(corr, MAIN_THREAD)) throw new GrainClusterError('ERR_FRAME_MALFORMED', 'relayed ask lacks routing fields')
    const back = (reply: EnvelopeReader): void => {
      const out = reply.copy()
      this.#relayReader.reset(out, 0, out.length).patchRouting(callerCorr, callerReplyTo)
      onReply(out)
    }
    const fail = (e: GrainClusterError): void => {
      onReply(prepareErrorReply(new EnvelopeWriter(), callerCorr, callerReplyTo, new GrainClusterError(e.code, e.reason, { ...info, ...e.details })).toBytes())
    }
    if (refusal !== undefined) {
      fail(refusal)
      return
    }
    // As long as the caller waits (the ask's timeout_ms), not this node's default: a kind's or a call's longer timeout must not be cut here.
    this.pending.addRaw(corr, info, timeoutMs ?? r.callerTimeoutMs, back, fail)
    if (redirect !== undefined) {
      this.onPidRequest!(redirect, bytes.slice())
      return
    }
    // Read before the write: a worker with nothing else queued answers within
    // µs, one working through a backlog (a tell stream) does not.
    const soon = link.sender.idle
    try {
      link.sender.sendBytes(bytes, 0, bytes.length)
    } catch (e) {
      this.pending.take(corr)
      fail(toGrainClusterError(e, 'ERR_RING_FULL'))
      return
    }
    // The caller waits on a socket: have the reply pump spin for this reply
    // instead of sleeping until it is notified (a thread wake-up per ask).
    if (soon) link.pump?.wake()
  }
  readonly #relayReader = new EnvelopeReader()

  /**
   * Route a checked tell batch from another node (remote/tell-batches.ts)
   * to the worker that owns its partition as one block copy. Returns false,
   * having done nothing, when the entries need the one-by-one path instead
   * (the node is leaving or may not serve: each gets its redirect or its
   * refusal there). Throws ERR_FRAME_MALFORMED for a partition out of range.
   */
  relayTellBlock(frame: Uint8Array, off: number, len: number, frames: number, partition: number): boolean {
    if (partition >= this.partitions) throw new GrainClusterError('ERR_FRAME_MALFORMED', `partition ${partition} out of range (this node has ${this.partitions}: partitions must match cluster-wide)`)
    if (this.#closed || this.redirectInbound || (this.mayServe !== undefined && !this.mayServe())) return false
    const link = this.#links[workerOfPartition(partition, this.workers)]!
    return link.sender.sendBlock(frame, off, len, frames)
  }

  /** Frames waiting in the longest overflow queue in front of a worker's ring (remote inbound flow control). */
  get ringBacklog(): number {
    let most = 0
    for (const l of this.#links) if (l.sender.backlog > most) most = l.sender.backlog
    return most
  }

  /** The bound of each worker ring's overflow queue, in frames. */
  get maxOverflowFrames(): number {
    return this.#links[0]!.sender.maxOverflowFrames
  }

  /** Largest envelope a worker ring takes (a tell batch entry may not be longer). */
  get maxRingFrameBytes(): number {
    return this.#links[0]!.sender.maxFrameBytes
  }

  /**
   * A reply envelope that came back from another node for an ask this main
   * thread sent there: settle the caller. Throws ERR_FRAME_MALFORMED for
   * bytes that are not a reply envelope.
   */
  acceptReply(bytes: Uint8Array): void {
    const r = this.#relayReader.reset(bytes, 0, bytes.length)
    if ((r.flags & FLAGS.REPLY) === 0) throw new GrainClusterError('ERR_FRAME_MALFORMED', 'expected a reply envelope')
    this.#settle(r)
  }

  // -------------------------------------------------------------- hand-off

  /**
   * Set by the node in a cluster: fetch the ActivationRecord of a hand-off
   * kind's key that a worker is activating (from the previous owner, or an
   * inbox of pushed records). Single node: every activation starts fresh.
   */
  onHandoffRequest: ((kind: string, key: string) => Promise<HandoffAnswer>) | undefined

  /**
   * Set by the node in a cluster: undefined while this node may serve
   * grains, else the typed error to answer with (minority side, serving
   * lease expired). Checked for requests relayed from other nodes; the
   * node's own calls are checked by placement (or, for PIDs, by the node).
   */
  servingRefusal: ((kind: string, key: string) => GrainClusterError | undefined) | undefined
  /** Cheap check before servingRefusal (no strings needed): false when the node may not serve. */
  mayServe: (() => boolean) | undefined

  /** Set while the node leaves: requests from other nodes are routed by placement instead of served here. */
  redirectInbound = false

  /** Keys this node released to other owners; a local delivery lifts the worker's tombstone first. */
  readonly #released = new Set<string>()
  readonly #releases = new Map<number, (records: ReleasedRecord[]) => void>()
  /** Records of a release whose reply comes in several parts. */
  readonly #releaseParts = new Map<number, ReleasedRecord[]>()
  #nextReleaseId = 1

  #onHandoffControl(link: WorkerLink, r: EnvelopeReader): void {
    let msg: Record<string, unknown>
    try {
      msg = this.codec.decode(r.buf, r.payloadOff, r.payloadLen) as Record<string, unknown>
      if (typeof msg !== 'object' || msg === null) throw new Error('not an object')
    } catch (e) {
      this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} control frame`, reason: toGrainClusterError(e).reason })
      return
    }
    if (r.messageType === CONTROL_TYPES.HANDOFF_REQUEST) {
      const id = Number(msg.id)
      const kind = String(msg.kind)
      const key = String(msg.key)
      const answer = this.onHandoffRequest === undefined ? Promise.resolve<HandoffAnswer>({ outcome: 'none' }) : this.onHandoffRequest(kind, key)
      void answer
        .catch((e: unknown): HandoffAnswer => ({ outcome: 'unavailable', reason: toGrainClusterError(e).reason }))
        .then((a) => {
          if (link.state === 'crashed' || link.state === 'stopped') return
          this.#released.delete(kindKeyOf(kind, key))
          this.#sendControl(link, CONTROL_TYPES.HANDOFF_REPLY, { id, ...a })
        })
    } else if (r.messageType === CONTROL_TYPES.RELEASE_REPLY) {
      // Keys the worker tombstoned on its own (rebalance): lift them when they come back here.
      if (Array.isArray(msg.tombed)) for (const t of msg.tombed as unknown[]) if (Array.isArray(t) && typeof t[0] === 'string' && typeof t[1] === 'string') this.#released.add(kindKeyOf(t[0], t[1]))
      const id = Number(msg.id)
      const done = this.#releases.get(id)
      if (done === undefined) return
      let acc = this.#releaseParts.get(id)
      if (acc === undefined) this.#releaseParts.set(id, (acc = []))
      if (Array.isArray(msg.records)) for (const rec of msg.records as ReleasedRecord[]) acc.push(rec)
      if (msg.more === true) return
      this.#releases.delete(id)
      this.#releaseParts.delete(id)
      done(acc)
    } else {
      this.#events.publish({ type: 'frame.malformed', source: `worker ${link.index} control frame`, reason: `unknown control type ${r.messageType}` })
    }
  }

  #sendControl(link: WorkerLink, type: number, body: unknown): void {
    const w = this.#writer.reset()
    w.flags = FLAGS.CONTROL
    w.messageType = type
    w.payloadBytes = encodeToBytes(this.codec, body)
    link.sender.send(w)
  }

  #untombIfReleased(link: WorkerLink, kind: string, key: string): void {
    if (this.#released.delete(kindKeyOf(kind, key))) this.#sendControl(link, CONTROL_TYPES.UNTOMB, { kind, key })
  }

  /**
   * Release kind/key to another owner: its worker finishes the messages it
   * accepted, snapshots, deactivates and tombstones the key (later messages
   * come back here to be routed). Resolves with the record, or [] if the
   * key was not active. Rejects if the worker is gone or does not answer.
   */
  releaseKey(kind: string, key: string, timeoutMs = 10_000): Promise<ReleasedRecord[]> {
    const link = this.#links[workerOfPartition(partitionOf(key, this.partitions), this.workers)]!
    this.#released.add(kindKeyOf(kind, key))
    return this.#release(link, { kind, key }, timeoutMs)
  }

  /**
   * Release every hand-off activation on every worker (graceful leave), or
   * with `park`, deactivate every activation of any kind without
   * tombstones (serving lease lost: nothing is served here meanwhile).
   */
  async releaseAll(timeoutMs = 10_000, o: { park?: boolean } = {}): Promise<ReleasedRecord[]> {
    const body = o.park === true ? { tomb: false, allKinds: true } : {}
    const all = await Promise.all(this.#links.map((l) => this.#release(l, body, timeoutMs).catch(() => [] as ReleasedRecord[])))
    return all.flat()
  }

  /**
   * After a membership change: every worker releases the activations whose
   * keys another of `members` now owns (rendezvous, the same rule placement
   * uses), so a key is live on one node only. Resolves with their records
   * (snapshots for hand-off kinds) for the caller to push to the new owners.
   */
  async rebalance(members: readonly { authority: string; nodeId: string }[], selfNodeId: string, timeoutMs = 10_000): Promise<ReleasedRecord[]> {
    const body = { members: members.map((m) => ({ authority: m.authority, nodeId: m.nodeId })), selfNodeId }
    const all = await Promise.all(this.#links.map((l) => this.#release(l, body, timeoutMs).catch(() => [] as ReleasedRecord[])))
    return all.flat()
  }

  #release(link: WorkerLink, body: { kind?: string; key?: string; tomb?: boolean; allKinds?: boolean; members?: unknown; selfNodeId?: string }, timeoutMs: number): Promise<ReleasedRecord[]> {
    if (link.state !== 'ready') return Promise.reject(new GrainClusterError('ERR_WORKER_UNAVAILABLE', `worker ${link.index} is ${link.state}`, { worker: link.index }))
    const id = this.#nextReleaseId++
    return new Promise<ReleasedRecord[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#releases.delete(id)
        this.#releaseParts.delete(id)
        reject(new GrainClusterError('ERR_GRAIN_TIMEOUT', `worker ${link.index} did not release ${body.kind ?? 'its activations'}${body.key === undefined ? '' : `/${body.key}`} within ${timeoutMs} ms`, { worker: link.index }))
      }, timeoutMs)
      this.#releases.set(id, (records) => {
        clearTimeout(timer)
        resolve(records)
      })
      try {
        this.#sendControl(link, CONTROL_TYPES.RELEASE_REQUEST, { id, ...body })
      } catch (e) {
        clearTimeout(timer)
        this.#releases.delete(id)
        reject(toGrainClusterError(e, 'ERR_RING_FULL'))
      }
    })
  }

  #publishWorkerEvent(bytes: Uint8Array): void {
    try {
      this.#events.publish(JSON.parse(utf8Decoder.decode(bytes)) as EventInit<RuntimeEvent>)
    } catch {
      this.#events.publish({ type: 'frame.malformed', source: 'worker event', reason: 'event payload is not JSON' })
    }
  }

  // ------------------------------------------------------------ send API

  /**
   * Validate kind/method/key (throwing the typed error a caller should see),
   * fill the shared writer with the request, and return the owning worker's
   * link. Allocation-free: this runs once per tell/ask.
   */
  #prepare(kind: string, key: string, method: string, payload: unknown): WorkerLink {
    const info = this.kindInfo(kind)
    if (info === undefined) {
      throw new GrainClusterError('ERR_GRAIN_UNKNOWN_KIND', `no grain kind "${kind}" is registered (known: ${[...this.kinds.keys()].join(', ') || 'none'})`, { kind, key, method })
    }
    let messageType: number | undefined
    if (method === this.#lastMethod) messageType = this.#lastMessageType
    else {
      messageType = info.methods.get(method)
      if (messageType !== undefined) {
        this.#lastMethod = method
        this.#lastMessageType = messageType
      }
    }
    if (messageType === undefined) {
      throw new GrainClusterError('ERR_GRAIN_UNKNOWN_METHOD', `grain kind ${kind} has no method "${method}" (methods: ${[...info.methods.keys()].join(', ')})`, { kind, key, method })
    }
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw new GrainClusterError('ERR_GRAIN_INVALID_KEY', `grain key must be a non-empty string of at most ${MAX_KEY_LENGTH} characters (got ${typeof key === 'string' ? `${key.length} characters` : typeof key})`, { kind, method })
    }
    if (this.#closed) throw new GrainClusterError('ERR_NODE_CLOSED', 'the node is closed', { kind, key, method })
    const partition = partitionOf(key, this.partitions)
    if (this.#released.size > 0) this.#untombIfReleased(this.#links[workerOfPartition(partition, this.workers)]!, kind, key)
    const w = this.#writer.reset()
    w.kind = info.kindBytes
    w.key = key
    w.partition = partition
    w.messageType = messageType
    w.schemaVersion = info.schemaVersion
    this.#payloadValue = payload
    w.payloadWriter = this.#encodePayload
    return this.#links[workerOfPartition(partition, this.workers)]!
  }

  /**
   * The kind's registration, or undefined. Calls come in runs of one kind
   * and method: the last kind and method are remembered, which saves two
   * Map lookups per message (kinds are registered once, at start).
   */
  kindInfo(kind: string): KindInfo | undefined {
    if (kind === this.#lastKind) return this.#lastInfo
    const info = this.kinds.get(kind)
    if (info !== undefined) {
      this.#lastKind = kind
      this.#lastInfo = info
      this.#lastMethod = undefined // the method cache belongs to the kind
    }
    return info
  }

  #lastKind: string | undefined = undefined
  #lastInfo: KindInfo | undefined = undefined
  #lastMethod: string | undefined = undefined
  #lastMessageType = 0

  /** Fire-and-forget. Throws ERR_RING_FULL under backpressure (see whenWritable). */
  tell(kind: string, key: string, method: string, payload: unknown): void {
    const link = this.#prepare(kind, key, method, payload)
    const w = this.#writer
    try {
      if (!link.sender.sendTell(w.kind!, w.messageType, w.schemaVersion, key, this.#encodePayload)) link.sender.send(w)
    } catch (e) {
      const err = toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { kind, key, method })
      if (err.code === 'ERR_GRAIN_PAYLOAD_ENCODE') this.#serializationFailed(kind, key, method, 'encode', 'request', err)
      throw err
    } finally {
      this.#payloadValue = undefined
    }
  }

  ask<R>(kind: string, key: string, method: string, payload: unknown, timeoutMs?: number): Promise<R> {
    let link: WorkerLink
    try {
      link = this.#prepare(kind, key, method, payload)
    } catch (e) {
      this.#payloadValue = undefined
      return Promise.reject(toGrainClusterError(e))
    }
    const corr = this.pending.nextId()
    const w = this.#writer
    w.flags = FLAGS.ASK
    w.correlationId = corr
    w.replyTo = MAIN_THREAD
    w.timeoutMs = timeoutMs ?? this.pending.defaultTimeoutMs
    try {
      link.sender.send(w)
    } catch (e) {
      const err = toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { kind, key, method })
      if (err.code === 'ERR_GRAIN_PAYLOAD_ENCODE') this.#serializationFailed(kind, key, method, 'encode', 'request', err)
      return Promise.reject(err)
    } finally {
      this.#payloadValue = undefined
    }
    return this.pending.add<R>(corr, { kind, key, method, worker: link.index }, timeoutMs)
  }

  /**
   * @internal Fault injection for tests: put raw bytes on worker `w`'s
   * inbound ring as if they were a frame.
   */
  injectFrame(w: number, bytes: Uint8Array): void {
    this.#links[w]!.sender.sendBytes(bytes, 0, bytes.length)
  }

  /** Resolves when no ring's overflow queue holds frames (backpressure). */
  async whenWritable(): Promise<void> {
    await Promise.all(this.#links.map((l) => l.sender.whenDrained()))
  }

  /** Stop every worker: deactivate activations (bounded), then terminate. */
  async close(timeoutMs = 5_000): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const t of this.#restartTimers) clearTimeout(t)
    this.#restartTimers.clear()
    await Promise.all(this.#links.map((l) => this.#stopLink(l, timeoutMs)))
    this.pending.failAll((c) => new GrainClusterError('ERR_NODE_CLOSED', 'the node closed before the call was answered', { ...c }))
  }

  async #stopLink(link: WorkerLink, timeoutMs: number): Promise<void> {
    const t = link.thread
    if (t === undefined || link.state === 'stopped') {
      link.state = 'stopped'
      await link.pump?.stop()
      return
    }
    link.state = 'stopping'
    const exited = new Promise<void>((resolve) => t.once('exit', () => resolve()))
    const closed = new Promise<void>((resolve) => {
      t.on('message', (m: WorkerToMain) => {
        if (m.type === 'closed') resolve()
      })
    })
    link.sender.flush()
    t.postMessage({ type: 'shutdown', timeoutMs } satisfies MainToWorker)
    const timer = setTimeout(() => void t.terminate(), timeoutMs + 1_000)
    await Promise.race([closed, exited])
    // Replies and events sent during shutdown.
    link.pump?.drainNow()
    clearTimeout(timer)
    await t.terminate()
    await exited
    await link.pump?.stop()
    link.state = 'stopped'
  }
}

function safe(f: () => string): string {
  try {
    return f()
  } catch {
    return ''
  }
}

