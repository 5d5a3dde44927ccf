/**
 * The grain side of a worker thread: turns inbound frames into handler
 * calls on activations, and handler results and grain-to-grain calls into
 * outbound frames.
 *
 * Threading rule: exactly one PartitionHost per worker thread, and it owns
 * every activation of the partitions mapped to that worker
 * (`worker = partition mod W`), so no activation is ever touched by two
 * threads and nothing here needs a lock.
 *
 * Ordering rule: messages to one activation run one at a time, in arrival
 * order. A synchronous handler runs straight from the ring; a message that
 * arrives while an async handler is pending waits in the activation's queue.
 */

import { type ErrorCode, type ErrorDetails, GrainClusterError, toGrainClusterError } from '../../common/errors.js'
import { messageTypeId, partitionOf, workerOfPartition } from '../../common/hash.js'
import { type Pid, parsePid } from '../../common/pid.js'
import type { KindEntry, KindRegistry, MethodEntry } from '../../grains/kind-registry.js'
import { CONTROL_TYPES, MAX_KEY_LENGTH, threadOfWorker } from '../../wire/control.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString } from '../../wire/envelope.js'
import { prepareErrorReply } from '../../wire/error-frame.js'
import { settleReply } from '../../wire/reply.js'
import type { PayloadCodec } from '../../wire/payload-codec.js'
import type { FrameSender } from '../ring/frame-sender.js'
import { Activation, type ActivationHost, type QueuedMessage } from './activation.js'
import type { WorkerEvent } from './worker-event.js'

export interface PartitionHostOptions {
  worker: number
  workers: number
  partitions: number
  registry: KindRegistry
  codec: PayloadCodec
  sender: FrameSender
  askTimeoutMs: number
  /** True when the main thread wants events of this category bit. */
  wants: (categoryBit: number) => boolean
  /** True when every grain call must go through the main thread (cluster placement). */
  routeViaMain?: () => boolean
}

interface PendingAsk {
  resolve: (v: unknown) => void
  reject: (e: GrainClusterError) => void
  timer: ReturnType<typeof setTimeout>
  kind: string
  key: string
  method: string
}

/** Category bits, in EVENT_CATEGORIES order (observability/events.ts). */
export const CATEGORY_BITS = { grain: 1, worker: 2, ring: 4, deadletter: 8, frame: 16, node: 32 } as const

const textEncoder = new TextEncoder()

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function'
}

function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

export class PartitionHost implements ActivationHost {
  readonly worker: number
  readonly self: number
  readonly workers: number
  readonly partitions: number
  readonly registry: KindRegistry
  readonly codec: PayloadCodec
  readonly sender: FrameSender
  readonly askTimeoutMs: number
  /** Coarse clock (ms) refreshed once per batch; used for idle passivation. */
  nowMs = performance.now()

  readonly #wants: (bit: number) => boolean
  readonly #routeViaMain: () => boolean
  readonly #reader = new EnvelopeReader()
  readonly #writer = new EnvelopeWriter()
  readonly #activations = new Map<KindEntry, Map<string, Activation>>()
  readonly #pending = new Map<number, PendingAsk>()
  #nextCorrelation = 1
  #lastKind: KindEntry | undefined = undefined
  #local: Uint8Array[] = []
  #localScheduled = false
  #activeCount = 0
  #payloadValue: unknown = undefined
  readonly #encodePayload = (buf: Uint8Array, off: number, max: number): number => this.codec.encodeInto(this.#payloadValue, buf, off, max)

  constructor(o: PartitionHostOptions) {
    this.worker = o.worker
    this.self = threadOfWorker(o.worker)
    this.workers = o.workers
    this.partitions = o.partitions
    this.registry = o.registry
    this.codec = o.codec
    this.sender = o.sender
    this.askTimeoutMs = o.askTimeoutMs
    this.#wants = o.wants
    this.#routeViaMain = o.routeViaMain ?? (() => false)
    for (const e of o.registry.kinds.values()) this.#activations.set(e, new Map())
  }

  /** Live activations on this worker. */
  get activationCount(): number {
    return this.#activeCount
  }

  /** Asks issued by grains on this worker still waiting for replies. */
  get pendingAsks(): number {
    return this.#pending.size
  }

  // ---------------------------------------------------------------- inbound

  /** Ring frame handler: the bytes are valid only during this call. */
  readonly onFrame = (data: Uint8Array, off: number, len: number): void => {
    const r = this.#reader
    try {
      r.reset(data, off, len)
    } catch (e) {
      this.#emit({ type: 'frame.malformed', source: `worker ${this.worker} inbound ring`, reason: reasonOf(e) })
      return
    }
    if ((r.flags & FLAGS.REPLY) !== 0) this.#completeAsk(r)
    else if ((r.flags & FLAGS.CONTROL) === 0) this.#handleRequest(r)
  }

  #handleRequest(r: EnvelopeReader): void {
    const replyTo = (r.flags & FLAGS.ASK) !== 0 ? r.replyTo : -1
    const corr = r.correlationId
    let kindName = ''
    let key = ''
    // Traffic comes in runs of one kind: compare bytes instead of decoding
    // the kind string and looking it up for every frame.
    let entry = this.#lastKind
    try {
      if (entry !== undefined && r.kindEquals(entry.kindBytes.bytes)) kindName = entry.kind
      else {
        kindName = r.kind()
        entry = this.registry.kinds.get(kindName)
        if (entry !== undefined) this.#lastKind = entry
      }
      key = r.key()
    } catch (e) {
      this.#emit({ type: 'frame.malformed', source: `worker ${this.worker} inbound ring`, reason: reasonOf(e) })
      if (replyTo >= 0) this.#replyError(replyTo, corr, toGrainClusterError(e, 'ERR_FRAME_MALFORMED'))
      return
    }
    if (entry === undefined) {
      this.#refuse(replyTo, corr, r.messageType, 'ERR_GRAIN_UNKNOWN_KIND', `no grain kind "${kindName}" is registered on worker ${this.worker}`, {
        kind: kindName,
        key,
      })
      return
    }
    const method = entry.methodsById.get(r.messageType)
    if (method === undefined) {
      this.#refuse(replyTo, corr, r.messageType, 'ERR_GRAIN_UNKNOWN_METHOD', `grain kind ${kindName} has no method with message type ${r.messageType}`, {
        kind: kindName,
        key,
      })
      return
    }
    let payload: unknown
    try {
      payload = r.payloadLen === 0 ? undefined : this.codec.decode(r.buf, r.payloadOff, r.payloadLen)
    } catch (e) {
      this.#refuse(replyTo, corr, r.messageType, 'ERR_GRAIN_PAYLOAD_DECODE', reasonOf(e), { kind: kindName, key, method: method.name })
      return
    }
    this.deliver(entry, key, method, payload, replyTo, corr)
  }

  /** A request that cannot be delivered: error reply for an ask, DeadLetter for a tell. */
  #refuse(replyTo: number, corr: number, messageType: number, code: ErrorCode, reason: string, details: ErrorDetails): void {
    if (replyTo >= 0) this.#replyError(replyTo, corr, new GrainClusterError(code, reason, details))
    else this.#deadLetter(String(details.kind ?? ''), String(details.key ?? ''), messageType, code, reason)
  }

  #deadLetter(kind: string, key: string, messageType: number, code: string, reason: string): void {
    this.#emit({ type: 'deadletter', kind, key, messageType, code, reason, worker: this.worker })
  }

  // ------------------------------------------------------------ activations

  deliver(entry: KindEntry, key: string, method: MethodEntry, payload: unknown, replyTo: number, corr: number): void {
    const acts = this.#activations.get(entry)!
    let act = acts.get(key)
    if (act === undefined) {
      act = this.#activate(entry, key, acts, method, replyTo, corr)
      if (act === undefined) return
    }
    act.lastUsedMs = this.nowMs
    if (act.busy || act.queue !== null) {
      act.enqueue({ method, payload, replyTo, correlationId: corr })
      return
    }
    this.#run(act, method, payload, replyTo, corr)
    if (!act.busy && act.deactivateRequested) void this.#deactivate(act, 'requested')
  }

  #activate(entry: KindEntry, key: string, acts: Map<string, Activation>, method: MethodEntry, replyTo: number, corr: number): Activation | undefined {
    const def = entry.def
    let state: unknown
    try {
      state = def.state === undefined ? undefined : def.state(key)
    } catch (e) {
      this.#activationFailed(entry, key, e, [{ method, payload: undefined, replyTo, correlationId: corr }])
      return undefined
    }
    const act = new Activation(this, entry, key, state, this.nowMs)
    acts.set(key, act)
    this.#activeCount++
    if (this.#wants(CATEGORY_BITS.grain)) this.#emit({ type: 'grain.activated', kind: entry.kind, key, worker: this.worker })
    if (def.onActivate !== undefined) {
      let r: unknown
      try {
        r = def.onActivate(act)
      } catch (e) {
        this.#discard(act)
        this.#activationFailed(entry, key, e, [{ method, payload: undefined, replyTo, correlationId: corr }])
        return undefined
      }
      if (isThenable(r)) {
        act.busy = true
        r.then(
          () => {
            act.busy = false
            this.#drainQueue(act)
          },
          (e: unknown) => {
            this.#discard(act)
            const waiting: QueuedMessage[] = []
            for (let m = act.dequeue(); m !== undefined; m = act.dequeue()) waiting.push(m)
            this.#activationFailed(entry, key, e, waiting)
          },
        )
      }
    }
    return act
  }

  #activationFailed(entry: KindEntry, key: string, e: unknown, waiting: QueuedMessage[]): void {
    const reason = `activation of ${entry.kind}/${key} failed: ${reasonOf(e)}`
    this.#emit({ type: 'grain.activation-failed', kind: entry.kind, key, worker: this.worker, reason })
    for (const m of waiting) {
      if (m.replyTo >= 0) {
        this.#replyError(m.replyTo, m.correlationId, new GrainClusterError('ERR_GRAIN_ACTIVATION_FAILED', reason, { kind: entry.kind, key, method: m.method.name }))
      } else this.#deadLetter(entry.kind, key, m.method.id, 'ERR_GRAIN_ACTIVATION_FAILED', reason)
    }
  }

  /** Drop an activation from the directory without running onDeactivate. */
  #discard(act: Activation): void {
    const acts = this.#activations.get(act.entry)!
    if (acts.get(act.key) === act) {
      acts.delete(act.key)
      this.#activeCount--
    }
  }

  #run(act: Activation, method: MethodEntry, payload: unknown, replyTo: number, corr: number): void {
    let result: unknown
    try {
      result = method.fn(act, payload)
    } catch (e) {
      this.#handlerFailed(act, method, e, replyTo, corr)
      return
    }
    if (isThenable(result)) {
      act.busy = true
      result.then(
        (v) => {
          act.busy = false
          if (replyTo >= 0) this.#reply(replyTo, corr, v, act, method)
          this.#drainQueue(act)
        },
        (e: unknown) => {
          act.busy = false
          this.#handlerFailed(act, method, e, replyTo, corr)
          this.#drainQueue(act)
        },
      )
      return
    }
    if (replyTo >= 0) this.#reply(replyTo, corr, result, act, method)
  }

  /** Run queued messages until one goes async or the queue is empty. */
  #drainQueue(act: Activation): void {
    while (!act.busy && !act.deactivating) {
      const m = act.dequeue()
      if (m === undefined) break
      act.lastUsedMs = this.nowMs
      this.#run(act, m.method, m.payload, m.replyTo, m.correlationId)
    }
    if (!act.busy && act.queue === null && act.deactivateRequested && !act.deactivating) void this.#deactivate(act, 'requested')
  }

  #handlerFailed(act: Activation, method: MethodEntry, e: unknown, replyTo: number, corr: number): void {
    const details = { kind: act.entry.kind, key: act.key, method: method.name }
    const err = GrainClusterError.is(e)
      ? new GrainClusterError(e.code, e.reason, { ...details, ...e.details })
      : new GrainClusterError('ERR_GRAIN_HANDLER_FAILED', `${act.entry.kind}.${method.name} failed for key ${act.key}: ${reasonOf(e)}`, details)
    this.#emit({ type: 'grain.handler-failed', kind: act.entry.kind, key: act.key, worker: this.worker, method: method.name, code: err.code, reason: err.reason })
    if (replyTo >= 0) this.#replyError(replyTo, corr, err)
  }

  /**
   * Passivate: run onDeactivate, then drop the activation. Messages that
   * arrive meanwhile wait on it and are handed to a fresh activation after.
   */
  #deactivate(act: Activation, reason: 'idle' | 'shutdown' | 'requested'): Promise<void> | undefined {
    act.deactivating = true
    act.deactivateRequested = false
    const onDeactivate = act.entry.def.onDeactivate
    let r: unknown
    if (onDeactivate !== undefined) {
      try {
        r = onDeactivate(act)
      } catch (e) {
        this.#emit({ type: 'grain.handler-failed', kind: act.kind, key: act.key, worker: this.worker, method: 'onDeactivate', code: 'ERR_GRAIN_HANDLER_FAILED', reason: reasonOf(e) })
      }
    }
    const finish = (): void => {
      act.busy = false
      this.#discard(act)
      if (this.#wants(CATEGORY_BITS.grain)) this.#emit({ type: 'grain.deactivated', kind: act.kind, key: act.key, worker: this.worker, reason })
      // Messages that arrived during onDeactivate go to a new activation, in order.
      const first = act.dequeue()
      if (first === undefined) return
      const rest: QueuedMessage[] = []
      for (let m = act.dequeue(); m !== undefined; m = act.dequeue()) rest.push(m)
      this.deliver(act.entry, act.key, first.method, first.payload, first.replyTo, first.correlationId)
      for (const m of rest) this.deliver(act.entry, act.key, m.method, m.payload, m.replyTo, m.correlationId)
    }
    if (isThenable(r)) {
      act.busy = true
      return Promise.resolve(r).then(finish, (e: unknown) => {
        this.#emit({ type: 'grain.handler-failed', kind: act.kind, key: act.key, worker: this.worker, method: 'onDeactivate', code: 'ERR_GRAIN_HANDLER_FAILED', reason: reasonOf(e) })
        finish()
      })
    }
    finish()
    return undefined
  }

  /** Passivate every activation idle for at least its kind's idleTtlMs. */
  sweepIdle(now: number = performance.now()): number {
    this.nowMs = now
    let n = 0
    for (const [entry, acts] of this.#activations) {
      const ttl = entry.idleTtlMs
      if (ttl <= 0) continue
      for (const act of acts.values()) {
        if (!act.busy && !act.deactivating && act.queue === null && now - act.lastUsedMs >= ttl) {
          void this.#deactivate(act, 'idle')
          n++
        }
      }
    }
    return n
  }

  /** Smallest idle TTL of any kind (0 when no kind passivates). */
  get minIdleTtlMs(): number {
    let min = 0
    for (const e of this.registry.kinds.values()) if (e.idleTtlMs > 0 && (min === 0 || e.idleTtlMs < min)) min = e.idleTtlMs
    return min
  }

  /** Deactivate everything (worker shutdown); resolves when every onDeactivate has settled. */
  async deactivateAll(): Promise<void> {
    const waits: Promise<void>[] = []
    for (const acts of this.#activations.values()) {
      for (const act of [...acts.values()]) {
        if (act.deactivating) continue
        const p = this.#deactivate(act, 'shutdown')
        if (p !== undefined) waits.push(p)
      }
    }
    await Promise.all(waits)
  }

  // --------------------------------------------------------------- outbound

  #reply(replyTo: number, corr: number, value: unknown, act: Activation, method: MethodEntry): void {
    const w = this.#writer.reset()
    w.flags = FLAGS.REPLY
    w.correlationId = corr
    w.replyTo = replyTo
    this.#payloadValue = value
    w.payloadWriter = this.#encodePayload
    try {
      this.#sendTo(replyTo, w)
    } catch (e) {
      this.#payloadValue = undefined
      const code: ErrorCode = GrainClusterError.is(e) ? e.code : 'ERR_GRAIN_PAYLOAD_ENCODE'
      this.#replyError(replyTo, corr, new GrainClusterError(code, `reply of ${act.kind}.${method.name} could not be sent: ${reasonOf(e)}`, {
        kind: act.kind,
        key: act.key,
        method: method.name,
      }))
      return
    }
    this.#payloadValue = undefined
  }

  #replyError(replyTo: number, corr: number, err: GrainClusterError): void {
    const w = prepareErrorReply(this.#writer, corr, replyTo, err)
    try {
      this.#sendTo(replyTo, w)
    } catch (e) {
      // The caller will time out; say why here rather than lose it silently.
      this.#deadLetter(String(err.details.kind ?? ''), String(err.details.key ?? ''), 0, toGrainClusterError(e, 'ERR_RING_FULL').code, `error reply lost: ${err.reason}`)
    }
  }

  /** Send to a thread: this worker's own thread short-circuits the rings. */
  #sendTo(thread: number, w: EnvelopeWriter): void {
    if (thread === this.self) this.#pushLocal(w.toBytes())
    else this.sender.send(w)
  }

  #pushLocal(bytes: Uint8Array): void {
    this.#local.push(bytes)
    if (!this.#localScheduled) {
      this.#localScheduled = true
      queueMicrotask(this.#runLocal)
    }
  }

  readonly #runLocal = (): void => {
    this.#localScheduled = false
    const frames = this.#local
    this.#local = []
    for (const f of frames) this.onFrame(f, 0, f.length)
  }

  #prepareRequest(kind: string, key: string, method: string, payload: unknown): { w: EnvelopeWriter; target: number } {
    const entry = this.registry.kinds.get(kind)
    if (entry === undefined) {
      const why = this.registry.stateless.has(kind) ? ' (stateless grains are called from the node API, not from grains)' : ''
      throw new GrainClusterError('ERR_GRAIN_UNKNOWN_KIND', `no grain kind "${kind}" is registered${why}`, { kind, key, method })
    }
    const m = entry.methodsByName.get(method)
    if (m === undefined) {
      throw new GrainClusterError('ERR_GRAIN_UNKNOWN_METHOD', `grain kind ${kind} has no method "${method}"`, { kind, key, method })
    }
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw new GrainClusterError('ERR_GRAIN_INVALID_KEY', `grain key must be a non-empty string of at most ${MAX_KEY_LENGTH} characters`, { kind, method })
    }
    const partition = partitionOf(key, this.partitions)
    const w = this.#writer.reset()
    w.kind = entry.kindBytes
    w.key = key
    w.partition = partition
    w.messageType = m.id
    w.schemaVersion = entry.schemaVersion
    this.#payloadValue = payload
    w.payloadWriter = this.#encodePayload
    // In a cluster the key may live on another node: let the main thread place it.
    const target = this.#routeViaMain() ? -1 : workerOfPartition(partition, this.workers)
    return { w, target }
  }

  tell(kind: string, key: string, method: string, payload: unknown): void {
    const { w, target } = this.#prepareRequest(kind, key, method, payload)
    try {
      if (target === this.worker) this.#pushLocal(w.toBytes())
      else this.sender.send(w)
    } finally {
      this.#payloadValue = undefined
    }
  }

  /**
   * Wrap a request for `pid` in a PID_REQUEST control frame: the main thread
   * knows the cluster and routes it (remote node or this one).
   */
  #sendPidRequest(pidText: string, method: string, payload: unknown, flags: number, corr: number): void {
    let pid: Pid
    try {
      pid = parsePid(pidText)
    } catch (e) {
      throw toGrainClusterError(e, 'ERR_PID_INVALID')
    }
    const w = this.#writer.reset()
    w.kind = this.#kindBytes(pid.kind)
    w.key = pid.key
    w.partition = partitionOf(pid.key, this.partitions)
    w.messageType = messageTypeId(method)
    w.flags = flags
    w.correlationId = corr
    w.replyTo = this.self
    this.#payloadValue = payload
    w.payloadWriter = this.#encodePayload
    let env: Uint8Array
    try {
      env = w.toBytes()
    } finally {
      this.#payloadValue = undefined
    }
    const pidBytes = textEncoder.encode(pidText)
    const body = new Uint8Array(2 + pidBytes.length + env.length)
    body[0] = pidBytes.length & 0xff
    body[1] = pidBytes.length >>> 8
    body.set(pidBytes, 2)
    body.set(env, 2 + pidBytes.length)
    const c = this.#writer.reset()
    c.flags = FLAGS.CONTROL
    c.messageType = CONTROL_TYPES.PID_REQUEST
    c.payloadBytes = body
    this.sender.send(c)
  }

  #kindBytes(kind: string): InternedString {
    const e = this.registry.kinds.get(kind)
    if (e !== undefined) return e.kindBytes
    let k = this.#foreignKinds.get(kind)
    if (k === undefined) this.#foreignKinds.set(kind, (k = new InternedString(kind)))
    return k
  }
  readonly #foreignKinds = new Map<string, InternedString>()

  tellPid(pid: string, method: string, payload: unknown): void {
    this.#sendPidRequest(pid, method, payload, 0, 0)
  }

  askPid<R>(pid: string, method: string, payload: unknown, timeoutMs: number | undefined): Promise<R> {
    const corr = this.#nextCorrelation
    this.#nextCorrelation = (this.#nextCorrelation + 1) >>> 0 || 1
    let target: Pid
    try {
      target = parsePid(pid)
      this.#sendPidRequest(pid, method, payload, FLAGS.ASK, corr)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { pid, method }))
    }
    return this.#await<R>(corr, target.kind, target.key, method, timeoutMs)
  }

  #await<R>(corr: number, kind: string, key: string, method: string, timeoutMs: number | undefined): Promise<R> {
    const ms = timeoutMs ?? this.askTimeoutMs
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(corr)
        reject(new GrainClusterError('ERR_GRAIN_TIMEOUT', `ask ${kind}.${method} to key ${key} got no reply within ${ms} ms`, { kind, key, method, limit: ms }))
      }, ms)
      this.#pending.set(corr, { resolve: resolve as (v: unknown) => void, reject, timer, kind, key, method })
    })
  }

  ask<R>(kind: string, key: string, method: string, payload: unknown, timeoutMs: number | undefined): Promise<R> {
    let prepared: { w: EnvelopeWriter; target: number }
    try {
      prepared = this.#prepareRequest(kind, key, method, payload)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e))
    }
    const { w, target } = prepared
    const corr = this.#nextCorrelation
    this.#nextCorrelation = (this.#nextCorrelation + 1) >>> 0 || 1
    w.flags = FLAGS.ASK
    w.correlationId = corr
    w.replyTo = this.self
    try {
      if (target === this.worker) this.#pushLocal(w.toBytes())
      else this.sender.send(w)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { kind, key, method }))
    } finally {
      this.#payloadValue = undefined
    }
    return this.#await<R>(corr, kind, key, method, timeoutMs)
  }

  #completeAsk(r: EnvelopeReader): void {
    const p = this.#pending.get(r.correlationId)
    if (p === undefined) return // late reply after a timeout: the caller already has its error
    this.#pending.delete(r.correlationId)
    clearTimeout(p.timer)
    settleReply(r, this.codec, p)
  }

  /** Fail every ask this worker's grains are waiting on (shutdown). */
  failPending(err: (p: { kind: string; key: string; method: string }) => GrainClusterError): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer)
      p.reject(err(p))
    }
    this.#pending.clear()
  }

  // ----------------------------------------------------------------- events

  #emit(e: WorkerEvent): void {
    const cat = e.type === 'deadletter' ? 'deadletter' : (e.type.slice(0, e.type.indexOf('.')) as keyof typeof CATEGORY_BITS)
    if (!this.#wants(CATEGORY_BITS[cat])) return
    const w = this.#writer.reset()
    w.flags = FLAGS.CONTROL
    w.messageType = CONTROL_TYPES.EVENT
    w.payloadBytes = textEncoder.encode(JSON.stringify({ ...e, at: Date.now() }))
    try {
      this.sender.send(w)
    } catch {
      // Events are best effort under backpressure; the ring.full event says why.
    }
  }
}
