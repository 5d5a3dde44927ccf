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

import { CallStats, type CallStatsReport } from '../call-stats.js'
import { IdTable } from '../../common/id-table.js'
import { type ErrorCode, type ErrorDetails, GrainClusterError, reasonOf, toGrainClusterError } from '../../common/errors.js'
import { kindKeyOf, messageTypeId, partitionOf, workerOfPartition } from '../../common/hash.js'
import { type PlacementCandidate, rendezvousOwner } from '../../common/rendezvous.js'
import { type Pid, parsePid } from '../../common/pid.js'
import { TextMemo } from '../../common/text-memo.js'
import { methodById, type KindEntry, type KindRegistry, type MethodEntry } from '../../grains/kind-registry.js'
import { CONTROL_TYPES, MAX_KEY_LENGTH, type PubSubRequest, threadOfWorker } from '../../wire/control.js'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString } from '../../wire/envelope.js'
import { prepareErrorReply } from '../../wire/error-frame.js'
import { settleReply } from '../../wire/reply.js'
import { TellRunEntries } from '../../wire/tell-run.js'
import { encodeToBytes, type PayloadCodec } from '../../wire/payload-codec.js'
import type { FrameSender } from '../ring/frame-sender.js'
import { Activation, type ActivationHost, type QueuedMessage, type ReleasedRecord } from './activation.js'
import { InterleavedCall } from './interleaved-call.js'
import type { WorkerEvent } from './worker-event.js'
import { EVENT_CATEGORIES } from '../../observability/events.js'
import { describeVersions } from '../../grains/limits-and-schemas.js'
import type { Admission } from './key-limits.js'

/** #decodeOrRefuse's answer for a payload that could not be decoded (the call is refused already). */
const DECODE_FAILED: unique symbol = Symbol('decode failed')

/** A kind serves a caller's schema version; 0 is a caller that does not know the kind (e.g. a pure client): accepted. */
function servesVersion(entry: KindEntry, version: number): boolean {
  return version === 0 || version === entry.schemaVersion || entry.supportedSchemaVersions.includes(version)
}

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

/**
 * A PID this worker's grains address. PID_REQUESTs name it by `index`; the
 * first one (until `defined`) also carries its text, which the main thread
 * keeps per worker: a repeated PID is neither decoded nor hashed there.
 */
interface PidTarget {
  readonly pid: Pid
  readonly utf8: Uint8Array
  readonly index: number
  defined: boolean
  /** The PID's kind as the envelope writes it, and the version this node speaks for it (0 for a kind it does not serve). */
  readonly kindBytes: InternedString
  readonly schemaVersion: number
}

const EMPTY_BYTES = new Uint8Array(0)

interface PendingAsk {
  resolve: (v: unknown) => void
  reject: (e: GrainClusterError) => void
  timer: ReturnType<typeof setTimeout>
  kind: string
  key: string
  method: string
  /** When the ask left (performance.now()); NaN when it is not a grain call to measure (whenWritable). */
  t0: number
}

/** Category bits, in EVENT_CATEGORIES order (observability/events.ts). */
export const CATEGORY_BITS = { grain: 1, worker: 2, ring: 4, deadletter: 8, frame: 16, node: 32, rpc: 1 << EVENT_CATEGORIES.indexOf('rpc'), placement: 1 << EVENT_CATEGORIES.indexOf('placement') } as const

const textEncoder = new TextEncoder()
/** How long past its own timeout a ctx.whenWritable waits for the main thread's answer. */
const WRITABLE_REPLY_GRACE_MS = 1_000
/** What a running call holds (PartitionHost.#run). */
const HOLD_KEY = 0
const HOLD_SHARED = 1
const HOLD_NOTHING = 2

/** setTimeout's largest delay (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

/** Records / tombstoned keys per RELEASE_REPLY part (each part must fit the ring). */
const RELEASE_REPLY_PART = 1_024

/** Recently passivated keys remembered for the churn signal. */
const MAX_PASSIVATED_TRACKED = 10_000

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function'
}

/** A string field of a decoded control message ('' when it is not a string). */
function textOf(v: unknown): string {
  return typeof v === 'string' ? v : ''
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
  /** The reader's key cache; its value per slot is the live activation that key had last (see #handleRequest). */
  readonly #keyCache = this.#reader.keyCache
  readonly #writer = new EnvelopeWriter()
  readonly #runEntries = new TellRunEntries()
  readonly #activations = new Map<KindEntry, Map<string, Activation>>()
  /** Not a Map: see IdTable (a Map's replaced tables keep finished asks alive into the old generation). */
  readonly #pending = new IdTable<PendingAsk>()
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
    const flags = r.flags
    if ((flags & FLAGS.REPLY) !== 0) this.#completeAsk(r)
    else if ((flags & FLAGS.CONTROL) !== 0) this.#handleControl(r)
    else if ((flags & FLAGS.TELL_RUN) === 0) this.#handleRequest(r)
    else this.#handleRun(r)
  }

  /**
   * A tell run (wire/tell-run.ts): the kind, method and version checked
   * once, then each entry delivered as the tell it stands for, in order.
   */
  #handleRun(r: EnvelopeReader): void {
    const entries = this.#runEntries.reset(r.buf, r.payloadOff, r.payloadLen)
    let entry: KindEntry | undefined
    let kindName = ''
    try {
      entry = this.#kindOf(r)
      kindName = this.#kindName
    } catch (e) {
      this.#malformedRun(r, `kind: ${reasonOf(e)}`)
      return
    }
    const messageType = r.messageType
    const version = r.schemaVersion
    const method = entry === undefined ? undefined : methodById(entry, messageType)
    // Checked once for the run; a run that cannot be served is refused tell by tell (a DeadLetter each), as its tells would be.
    const served = method !== undefined && servesVersion(entry!, version)
    const cache = this.#keyCache
    while (entries.next()) {
      let key: string
      try {
        key = r.keyAt(entries.keyOff, entries.keyLen)
      } catch (e) {
        this.#malformedRun(r, `entry key: ${reasonOf(e)}`)
        continue
      }
      if (!served) {
        this.#methodOrRefuse(entry, kindName, key, messageType, version, -1, 0)
        continue
      }
      const slot = cache.slot
      const payload = this.#decodeOrRefuse(kindName, key, method, r.buf, entries.payloadOff, entries.payloadLen, -1, 0)
      if (payload !== DECODE_FAILED) this.#deliverCached(entry!, key, slot, method, payload, -1, 0, undefined)
    }
    if (entries.error !== undefined) this.#malformedRun(r, entries.error)
  }

  /** A run whose framing broke: the entries before the break were delivered; the rest are unreadable. */
  #malformedRun(r: EnvelopeReader, reason: string): void {
    this.#emit({ type: 'frame.malformed', source: `worker ${this.worker} inbound ring`, reason: `tell run (message type ${r.messageType}): ${reason}` })
  }

  /**
   * The registered kind an envelope names, and its name. Traffic comes in
   * runs of one kind: compare bytes instead of decoding the kind string and
   * looking it up for every frame. Throws ERR_FRAME_MALFORMED.
   */
  #kindOf(r: EnvelopeReader): KindEntry | undefined {
    const last = this.#lastKind
    if (last !== undefined && r.kindEquals(last.kindBytes)) {
      this.#kindName = last.kind
      return last
    }
    const name = (this.#kindName = r.kind())
    const entry = this.registry.kinds.get(name)
    if (entry !== undefined) this.#lastKind = entry
    return entry
  }

  /** The kind name #kindOf read last (set even when no kind of that name is registered). */
  #kindName = ''

  /**
   * Deliver to the activation this key's cache slot led to last time: most
   * requests skip the activation Map. A slot's value is a live activation
   * (#discard clears it) of any kind; the cache drops it when the slot takes
   * another key, and the key compare (the same string object on a hit) keeps
   * this path right without relying on that.
   */
  #deliverCached(entry: KindEntry, key: string, slot: number, method: MethodEntry, payload: unknown, replyTo: number, corr: number, chain: string | undefined): void {
    let act = slot < 0 ? undefined : (this.#keyCache.valueAt(slot) as Activation | undefined)
    if (act !== undefined && (act.key !== key || act.entry !== entry)) act = undefined
    this.deliver(entry, key, method, payload, replyTo, corr, act, slot, chain)
  }

  #handleRequest(r: EnvelopeReader): void {
    const replyTo = (r.flags & FLAGS.ASK) !== 0 ? r.replyTo : -1
    const corr = r.correlationId
    let kindName = ''
    let key = ''
    let slot = -1
    let entry: KindEntry | undefined
    try {
      entry = this.#kindOf(r)
      kindName = this.#kindName
      key = r.key()
      slot = this.#keyCache.slot
    } catch (e) {
      this.#emit({ type: 'frame.malformed', source: `worker ${this.worker} inbound ring`, reason: reasonOf(e) })
      if (replyTo >= 0) this.#replyError(replyTo, corr, toGrainClusterError(e, 'ERR_FRAME_MALFORMED'))
      return
    }
    const method = this.#methodOrRefuse(entry, kindName, key, r.messageType, r.schemaVersion, replyTo, corr)
    if (method === undefined) return
    const payload = this.#decodeOrRefuse(kindName, key, method, r.buf, r.payloadOff, r.payloadLen, replyTo, corr)
    // Only asks made inside a grain call carry a chain (the envelope's sender field).
    if (payload === DECODE_FAILED) return
    // Read by #overflow if the call has to wait (deliver's other callers pass none).
    this.#arrivingTimeoutMs = replyTo >= 0 ? r.timeoutMs : 0
    this.#deliverCached(entry!, key, slot, method, payload, replyTo, corr, r.senderLen > 0 ? r.sender() : undefined)
    this.#arrivingTimeoutMs = 0
  }
  /** The timeout_ms of the ask being delivered (0: none); see #overflow and #bounce. */
  #arrivingTimeoutMs = 0
  /** When a re-delivered ask first arrived (performance.now()); 0: it arrives now. */
  #arrivingQueuedAt = 0

  /**
   * The method an envelope's message type names, when this worker serves
   * its kind, method and schema version; else undefined, once the call is
   * refused (error reply for an ask, DeadLetter for a tell).
   */
  #methodOrRefuse(entry: KindEntry | undefined, kindName: string, key: string, messageType: number, version: number, replyTo: number, corr: number): MethodEntry | undefined {
    if (entry === undefined) {
      this.#refuse(replyTo, corr, messageType, 'ERR_GRAIN_UNKNOWN_KIND', `no grain kind "${kindName}" is registered on worker ${this.worker}`, { kind: kindName, key })
      return undefined
    }
    const method = methodById(entry, messageType)
    if (method === undefined) {
      this.#refuse(replyTo, corr, messageType, 'ERR_GRAIN_UNKNOWN_METHOD', `grain kind ${kindName} has no method with message type ${messageType}`, { kind: kindName, key })
      return undefined
    }
    if (!servesVersion(entry, version)) {
      this.#schemaMismatch(entry, key, method, version, replyTo, corr)
      return undefined
    }
    return method
  }

  /** A request's payload; or, when it cannot be decoded, DECODE_FAILED once the call is reported and refused. */
  #decodeOrRefuse(kindName: string, key: string, method: MethodEntry, buf: Uint8Array, off: number, len: number, replyTo: number, corr: number): unknown {
    try {
      return len === 0 ? undefined : this.codec.decode(buf, off, len)
    } catch (e) {
      const reason = `request payload of ${kindName}.${method.name} could not be decoded: ${reasonOf(e)}`
      this.#serializationFailed(kindName, key, method.name, 'decode', 'request', 'ERR_GRAIN_PAYLOAD_DECODE', reason)
      this.#refuse(replyTo, corr, method.id, 'ERR_GRAIN_PAYLOAD_DECODE', reason, { kind: kindName, key, method: method.name })
      return DECODE_FAILED
    }
  }

  /** A request that cannot be delivered: error reply for an ask, DeadLetter for a tell. */
  #refuse(replyTo: number, corr: number, messageType: number, code: ErrorCode, reason: string, details: ErrorDetails): void {
    if (replyTo >= 0) this.#replyError(replyTo, corr, new GrainClusterError(code, reason, details))
    else this.#deadLetter(String(details.kind ?? ''), String(details.key ?? ''), messageType, code, reason)
  }

  #deadLetter(kind: string, key: string, messageType: number, code: string, reason: string): void {
    this.#emit({ type: 'deadletter', kind, key, messageType, code, reason, worker: this.worker })
  }

  #schemaMismatch(entry: KindEntry, key: string, method: MethodEntry, version: number, replyTo: number, corr: number): void {
    const served = entry.supportedSchemaVersions
    const reason = `schema mismatch: caller speaks ${entry.kind} v${version}; this node serves ${describeVersions(entry.kind, served)}`
    this.#emit({ type: 'rpc.schema-mismatch', kind: entry.kind, key, method: method.name, callerVersion: version, servedVersions: [...served], where: 'worker', worker: this.worker, code: 'ERR_SCHEMA_MISMATCH', reason })
    this.#refuse(replyTo, corr, method.id, 'ERR_SCHEMA_MISMATCH', reason, { kind: entry.kind, key, method: method.name, callerVersion: version, servedVersions: [...served] })
  }

  #serializationFailed(kind: string, key: string, method: string, direction: 'encode' | 'decode', message: 'request' | 'reply', code: string, reason: string): void {
    this.#emit({ type: 'rpc.serialization-failed', kind, key, method, direction, message, worker: this.worker, code, reason })
  }

  /** A call that cannot start now: queue it, or apply the kind's queuePolicy when the queue is full (spec 6.3). */
  #overflow(act: Activation, admission: Exclude<Admission, 'run'>, method: MethodEntry, payload: unknown, replyTo: number, corr: number, chain: string | undefined): void {
    const kind = act.entry.kind
    const key = act.key
    const depth = act.entry.limits.queueDepth
    // Calls whose callers gave up hold no place: a full queue of them would
    // refuse (or drop) live calls until the key reached them.
    if (admission !== 'queue' && this.#expireOldest(act) > 0 && act.queued < depth) admission = 'queue'
    if (admission === 'reject') {
      const reason = `${kind}/${key} already has ${depth} calls waiting (queueDepth ${depth}); ${method.name} refused (queuePolicy reject)`
      this.#emit({ type: 'rpc.rejected', kind, key, method: method.name, worker: this.worker, code: 'ERR_GRAIN_QUEUE_FULL', reason, policy: 'reject' })
      this.#refuse(replyTo, corr, method.id, 'ERR_GRAIN_QUEUE_FULL', reason, { kind, key, method: method.name, limit: depth })
      return
    }
    if (admission === 'dropOldest') {
      const old = act.dropOldest()!
      const reason = `${kind}/${key} had ${depth} calls waiting (queueDepth ${depth}): the oldest, ${old.method.name}, was dropped for a newer ${method.name} (queuePolicy dropOldest)`
      this.#emit({ type: 'rpc.dropped', kind, key, method: old.method.name, worker: this.worker, code: 'ERR_GRAIN_DROPPED', reason, policy: 'dropOldest' })
      this.#refuse(old.replyTo, old.correlationId, old.method.id, 'ERR_GRAIN_DROPPED', reason, { kind, key, method: old.method.name, limit: depth })
    }
    const timeoutMs = this.#arrivingTimeoutMs
    const queuedAt = timeoutMs === 0 ? 0 : this.#arrivingQueuedAt > 0 ? this.#arrivingQueuedAt : performance.now()
    act.enqueue({ method, payload, replyTo, correlationId: corr, chain, timeoutMs, queuedAt })
  }

  /**
   * Is `m` a queued ask whose caller's timeout passed while it waited? Then
   * it is answered ERR_GRAIN_TIMEOUT (rpc.expired) and not run, as
   * Orleans drops expired requests. Its reply would reach nobody, and under
   * overload a queue of such calls keeps the key busy with work whose
   * results are thrown away while live callers wait behind it. The caller
   * started its clock before the ask reached this worker, so it has given
   * up by the time this fires.
   */
  #expired(act: Activation, m: QueuedMessage): boolean {
    if (m.timeoutMs === 0) return false
    const waitedMs = performance.now() - m.queuedAt
    if (waitedMs < m.timeoutMs) return false
    const kind = act.entry.kind
    const waited = Math.round(waitedMs)
    const reason = `${kind}.${m.method.name} on key ${act.key} waited ${waited} ms in the key's queue, past its caller's timeout of ${m.timeoutMs} ms: not run`
    this.#emit({ type: 'rpc.expired', kind, key: act.key, method: m.method.name, worker: this.worker, code: 'ERR_GRAIN_TIMEOUT', reason, timeoutMs: m.timeoutMs, waitedMs: waited })
    this.#refuse(m.replyTo, m.correlationId, m.method.id, 'ERR_GRAIN_TIMEOUT', reason, { kind, key: act.key, method: m.method.name, limit: m.timeoutMs })
    return true
  }

  /**
   * Expire the queue's oldest calls while their callers' timeouts have
   * passed; how many went. Only the head: waiting calls mostly share their
   * kind's timeout, so the expired ones are the oldest, and a full queue
   * under steady overload costs one look per refused call, not a scan.
   */
  #expireOldest(act: Activation): number {
    let n = 0
    for (let m = act.oldest(); m !== undefined && this.#expired(act, m); m = act.oldest()) {
      act.dequeue()
      n++
    }
    return n
  }

  // ------------------------------------------------------------ activations

  /**
   * `known`: the key's live activation when the caller already has it;
   * `slot`: the reader's key-cache slot of `key` (-1: none), remembered for
   * the next request; `chain`: the call chain the request belongs to.
   */
  deliver(entry: KindEntry, key: string, method: MethodEntry, payload: unknown, replyTo: number, corr: number, known?: Activation, slot = -1, chain?: string): void {
    if (this.#tombCount > 0 && this.#tombs.get(entry)?.has(key) === true) {
      // A call of the chain that still holds the released activation runs
      // inside it: bounced, it would wait at the new owner for the hand-off
      // that waits for this very call.
      const held = chain === undefined ? undefined : this.#activations.get(entry)!.get(key)
      if (held?.heldBy(chain) === true) return this.#reenter(held, method, payload, replyTo, corr, chain!)
      return this.#bounce(entry, key, method, payload, replyTo, corr, chain)
    }
    let act = known
    if (act === undefined) {
      const acts = this.#activations.get(entry)!
      act = acts.get(key)
      if (act === undefined) {
        act = this.#activate(entry, key, acts, method, replyTo, corr)
        if (act === undefined) return
      }
      if (slot >= 0) {
        this.#keyCache.setValue(slot, act)
        act.cacheSlot = slot
      }
    }
    act.lastUsedMs = this.nowMs
    // Interleaving methods neither wait for the key nor hold it (#run).
    if (!(method.interleave && act.interleavable) && (act.busy || act.queue !== null || act.sharedRunning !== 0 || act.deactivating)) {
      // Caused by the call holding this key (A → … → A): queued, it would
      // wait behind that very call until the ask timed out.
      if (act.heldBy(chain)) return this.#reenter(act, method, payload, replyTo, corr, chain!)
      // A passivating activation takes no new call: it waits for the next activation.
      const admission = act.deactivating && act.queued < act.entry.limits.queueDepth ? 'queue' : act.admit(method.readOnly, act.entry.limits)
      if (admission !== 'run') {
        this.#overflow(act, admission, method, payload, replyTo, corr, chain)
        return
      }
    }
    this.#run(act, method, payload, replyTo, corr, chain)
    if (act.idle && act.deactivateRequested) void this.#deactivate(act, 'requested')
  }

  #activate(entry: KindEntry, key: string, acts: Map<string, Activation>, method: MethodEntry, replyTo: number, corr: number): Activation | undefined {
    const def = entry.def
    if (entry.handoff && this.#routeViaMain()) {
      // In a cluster a hand-off kind first asks the main thread for the
      // previous owner's record; messages queue on the busy activation
      // meanwhile, so they run in order on the restored state.
      const act = new Activation(this, entry, key, undefined, this.nowMs)
      acts.set(key, act)
      this.#activeCount++
      act.busy = true
      const id = this.#nextHandoffId++
      this.#handoffWaits.set(id, act)
      this.#sendControl(CONTROL_TYPES.HANDOFF_REQUEST, { id, kind: entry.kind, key })
      return act
    }
    // The call that caused the activation, to be failed if it cannot start (deliver runs it after).
    const trigger: QueuedMessage[] = [{ method, payload: undefined, replyTo, correlationId: corr, chain: undefined, timeoutMs: 0, queuedAt: 0 }]
    let state: unknown
    try {
      state = def.state === undefined ? undefined : def.state(key)
    } catch (e) {
      this.#activationFailed(entry, key, e, trigger)
      return undefined
    }
    const act = new Activation(this, entry, key, state, this.nowMs)
    acts.set(key, act)
    this.#activeCount++
    return this.#started(act, trigger) ? act : undefined
  }

  /**
   * The activation has its state: publish it and run onActivate. False when
   * onActivate threw synchronously (the activation is discarded and
   * `trigger` failed).
   */
  #started(act: Activation, trigger: QueuedMessage[]): boolean {
    const entry = act.entry
    const key = act.key
    const def = entry.def
    this.#noteReactivation(entry, key)
    if (this.#wants(CATEGORY_BITS.grain)) this.#emit({ type: 'grain.activated', kind: entry.kind, key, worker: this.worker })
    if (def.onActivate !== undefined) {
      let r: unknown
      try {
        r = def.onActivate(act)
      } catch (e) {
        this.#discard(act)
        this.#activationFailed(entry, key, e, trigger)
        return false
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
    return true
  }

  #activationFailed(entry: KindEntry, key: string, e: unknown, waiting: QueuedMessage[], code: ErrorCode = 'ERR_GRAIN_ACTIVATION_FAILED'): void {
    const reason = code === 'ERR_GRAIN_ACTIVATION_FAILED' ? `activation of ${entry.kind}/${key} failed: ${reasonOf(e)}` : reasonOf(e)
    this.#emit({ type: 'grain.activation-failed', kind: entry.kind, key, worker: this.worker, reason })
    for (const m of waiting) {
      if (m.replyTo >= 0) {
        this.#replyError(m.replyTo, m.correlationId, new GrainClusterError(code, reason, { kind: entry.kind, key, method: m.method.name }))
      } else this.#deadLetter(entry.kind, key, m.method.id, code, reason)
    }
  }

  // -------------------------------------------------------------- hand-off

  readonly #handoffWaits = new Map<number, Activation>()
  #nextHandoffId = 1
  /** Keys released to another owner: their messages go back to the main thread, which routes them to the new owner. */
  readonly #tombs = new Map<KindEntry, Set<string>>()
  #tombCount = 0
  /** Recently passivated keys (for the churn signal), oldest first, bounded. */
  readonly #passivatedAt = new Map<string, number>()

  #handleControl(r: EnvelopeReader): void {
    let msg: Record<string, unknown>
    try {
      msg = this.codec.decode(r.buf, r.payloadOff, r.payloadLen) as Record<string, unknown>
      if (typeof msg !== 'object' || msg === null) throw new Error('not an object')
    } catch (e) {
      this.#emit({ type: 'frame.malformed', source: `worker ${this.worker} control frame`, reason: reasonOf(e) })
      return
    }
    switch (r.messageType) {
      case CONTROL_TYPES.HANDOFF_REPLY:
        this.#onHandoffReply(msg)
        break
      case CONTROL_TYPES.RELEASE_REQUEST:
        this.#onRelease(msg)
        break
      case CONTROL_TYPES.UNTOMB: {
        const entry = this.registry.kinds.get(textOf(msg.kind))
        const set = entry === undefined ? undefined : this.#tombs.get(entry)
        if (set?.delete(textOf(msg.key)) === true) this.#tombCount--
        break
      }
      default:
        this.#emit({ type: 'frame.malformed', source: `worker ${this.worker} control frame`, reason: `unknown control type ${r.messageType}` })
    }
  }

  /** A control frame to the main thread; with `corr`, a request it answers to this thread (a service of the main thread). */
  #sendControl(type: number, body: unknown, corr?: number): void {
    const w = this.#writer.reset()
    w.flags = corr === undefined ? FLAGS.CONTROL : FLAGS.CONTROL | FLAGS.ASK
    w.messageType = type
    if (corr !== undefined) {
      w.correlationId = corr
      w.replyTo = this.self
    }
    w.payloadBytes = encodeToBytes(this.codec, body)
    this.sender.send(w)
  }

  /** The main thread answered a hand-off request: restore (or start fresh), then run the queued messages. */
  #onHandoffReply(msg: Record<string, unknown>): void {
    const id = Number(msg.id)
    const act = this.#handoffWaits.get(id)
    if (act === undefined) return
    this.#handoffWaits.delete(id)
    const entry = act.entry
    const def = entry.def
    const outcome = msg.outcome
    const fail = (e: unknown, code?: ErrorCode): void => {
      this.#discard(act)
      const waiting: QueuedMessage[] = []
      for (let m = act.dequeue(); m !== undefined; m = act.dequeue()) waiting.push(m)
      this.#activationFailed(entry, act.key, e, waiting, code)
    }
    if (outcome === 'unavailable' && def.requiresSnapshot === true) {
      fail(
        new Error(`${entry.kind}/${act.key} requires a snapshot and none could be obtained from its previous owner: ${typeof msg.reason === 'string' ? msg.reason : 'unavailable'}`),
        'ERR_GRAIN_SNAPSHOT_MISSING',
      )
      return
    }
    try {
      act.state = outcome === 'record' ? def.restore!(msg.snapshot, act.key) : def.state === undefined ? undefined : def.state(act.key)
    } catch (e) {
      fail(e)
      return
    }
    act.version = typeof msg.version === 'number' ? msg.version : 0
    act.busy = false
    if (!this.#started(act, [])) return
    if (!act.busy) this.#drainQueue(act)
  }

  /** Release one key (or every hand-off activation): finish its accepted messages, snapshot, deactivate, tombstone. */
  #onRelease(msg: Record<string, unknown>): void {
    const id = Number(msg.id)
    const targets: Activation[] = []
    // tomb: false when the node only parks its activations (serving lease lost): it refuses calls anyway.
    const tomb = msg.tomb !== false
    const tombed: [string, string][] = []
    if (Array.isArray(msg.members)) {
      // Rebalance after a membership change: every activation whose key
      // another member now owns leaves (hand-off kinds with their record).
      const members = msg.members as PlacementCandidate[]
      const selfId = textOf(msg.selfNodeId)
      for (const [entry, acts] of this.#activations) {
        for (const a of acts.values()) {
          const owner = rendezvousOwner(members, entry.kind, a.key)
          if (owner !== undefined && owner.nodeId !== selfId) targets.push(a)
        }
      }
      for (const a of targets) {
        this.#tomb(a.entry, a.key)
        tombed.push([a.kind, a.key])
      }
    } else if (msg.kind === undefined) {
      for (const [entry, acts] of this.#activations) if (entry.handoff || msg.allKinds === true) for (const a of acts.values()) targets.push(a)
      if (tomb) for (const a of targets) this.#tomb(a.entry, a.key)
    } else {
      const entry = this.registry.kinds.get(textOf(msg.kind))
      if (entry !== undefined) {
        const key = textOf(msg.key)
        this.#tomb(entry, key)
        const a = this.#activations.get(entry)!.get(key)
        if (a !== undefined) targets.push(a)
      }
    }
    const records: ReleasedRecord[] = []
    let left = targets.length
    const done = (): void => this.#sendReleaseReply(id, records, tombed)
    if (left === 0) {
      done()
      return
    }
    for (const a of targets) {
      if (a.released !== null || a.deactivating) {
        // Already on its way out: nothing to hand over from here.
        if (--left === 0) done()
        continue
      }
      a.released = (rec) => {
        records.push(rec)
        if (--left === 0) done()
      }
      a.deactivateRequested = true
      if (a.idle && a.queue === null) void this.#deactivate(a, 'requested')
    }
  }

  /**
   * Answer a release in parts that fit the ring (a rebalance can move a
   * great many keys): `more: true` on every part but the last. A part that
   * does not fit is split; a single record whose snapshot cannot be sent
   * goes without it, with the reason.
   */
  #sendReleaseReply(id: number, records: ReleasedRecord[], tombed: [string, string][]): void {
    const send = (recs: ReleasedRecord[], tombs: [string, string][], more: boolean): void => {
      try {
        this.#sendControl(CONTROL_TYPES.RELEASE_REPLY, { id, records: recs, tombed: tombs, more })
      } catch (e) {
        if (recs.length + tombs.length <= 1) {
          const bare = recs.map((rec) => ({ kind: rec.kind, key: rec.key, version: rec.version, reason: `snapshot could not be sent: ${reasonOf(e)}` }))
          this.#sendControl(CONTROL_TYPES.RELEASE_REPLY, { id, records: bare, tombed: tombs, more })
          return
        }
        const rh = recs.length >> 1
        const th = tombs.length >> 1
        send(recs.slice(0, rh), tombs.slice(0, th), true)
        send(recs.slice(rh), tombs.slice(th), more)
      }
    }
    const n = Math.max(records.length, tombed.length)
    if (n === 0) return send([], [], false)
    for (let i = 0; i < n; i += RELEASE_REPLY_PART) send(records.slice(i, i + RELEASE_REPLY_PART), tombed.slice(i, i + RELEASE_REPLY_PART), i + RELEASE_REPLY_PART < n)
  }

  #tomb(entry: KindEntry, key: string): void {
    let set = this.#tombs.get(entry)
    if (set === undefined) this.#tombs.set(entry, (set = new Set()))
    if (!set.has(key)) {
      set.add(key)
      this.#tombCount++
    }
  }

  /**
   * A message for a key this worker released: send the same request back
   * to the main thread, which routes it by placement to the new owner
   * (asks keep their reply route, so the caller never notices the detour).
   */
  #bounce(entry: KindEntry, key: string, method: MethodEntry, payload: unknown, replyTo: number, corr: number, chain: string | undefined): void {
    const w = this.#writer.reset()
    if (chain !== undefined) w.sender = chain
    w.flags = replyTo >= 0 ? FLAGS.ASK : 0
    w.kind = entry.kindBytes
    w.key = key
    w.partition = partitionOf(key, this.partitions)
    w.messageType = method.id
    w.schemaVersion = entry.schemaVersion
    w.correlationId = replyTo >= 0 ? corr : 0
    w.replyTo = replyTo >= 0 ? replyTo : 0
    // What is left of the caller's timeout, so the relay to the new owner
    // waits that long and no longer (0: the relay's default).
    const t = this.#arrivingTimeoutMs
    if (replyTo >= 0 && t > 0) w.timeoutMs = Math.max(1, Math.ceil(t - (this.#arrivingQueuedAt > 0 ? performance.now() - this.#arrivingQueuedAt : 0)))
    this.#payloadValue = payload
    w.payloadWriter = this.#encodePayload
    try {
      this.sender.send(w)
    } catch (e) {
      const err = new GrainClusterError('ERR_GRAIN_MOVED', `${entry.kind}/${key} moved to another node and could not be forwarded: ${reasonOf(e)}`, { kind: entry.kind, key, method: method.name })
      if (replyTo >= 0) this.#replyError(replyTo, corr, err)
      else this.#deadLetter(entry.kind, key, method.id, err.code, err.reason)
    } finally {
      this.#payloadValue = undefined
    }
  }

  /** Churn signal: a key activated again soon after it was passivated. */
  #noteReactivation(entry: KindEntry, key: string): void {
    if (this.#passivatedAt.size === 0) return
    const k = kindKeyOf(entry.kind, key)
    const at = this.#passivatedAt.get(k)
    if (at === undefined) return
    this.#passivatedAt.delete(k)
    if (this.#wants(CATEGORY_BITS.placement)) {
      const afterMs = Math.round(this.nowMs - at)
      this.#emit({ type: 'placement.reactivated', kind: entry.kind, key, worker: this.worker, afterMs, churn: entry.idleTtlMs > 0 && afterMs < entry.idleTtlMs })
    }
  }

  #notePassivated(entry: KindEntry, key: string): void {
    if (!this.#wants(CATEGORY_BITS.placement)) return
    const k = kindKeyOf(entry.kind, key)
    this.#passivatedAt.delete(k)
    this.#passivatedAt.set(k, this.nowMs)
    // Bounded: the oldest entries go first; churn shows up in the recent ones.
    if (this.#passivatedAt.size > MAX_PASSIVATED_TRACKED) {
      const oldest = this.#passivatedAt.keys().next().value
      if (oldest !== undefined) this.#passivatedAt.delete(oldest)
    }
  }

  /** Drop an activation from the directory without running onDeactivate. */
  #discard(act: Activation): void {
    if (act.cacheSlot >= 0 && this.#keyCache.valueAt(act.cacheSlot) === act) this.#keyCache.setValue(act.cacheSlot, undefined)
    const acts = this.#activations.get(act.entry)!
    if (acts.get(act.key) === act) {
      acts.delete(act.key)
      this.#activeCount--
    }
  }

  /** A call of the chain holding the key: run it inside that call, or refuse it (callChainReentrancy false). */
  #reenter(act: Activation, method: MethodEntry, payload: unknown, replyTo: number, corr: number, chain: string): void {
    if (act.entry.callChainReentrancy) return this.#run(act, method, payload, replyTo, corr, chain)
    const kind = act.entry.kind
    const reason = `${kind}.${method.name} on key ${act.key} was called by the call that holds this key (a call cycle); ${kind} does not let call chains re-enter (callChainReentrancy false), so the call was refused instead of waiting for its own caller`
    this.#refuse(replyTo, corr, method.id, 'ERR_GRAIN_DEADLOCK', reason, { kind, key: act.key, method: method.name })
  }

  #run(act: Activation, method: MethodEntry, payload: unknown, replyTo: number, corr: number, chain: string | undefined): void {
    // What the call holds while it runs: the key for its call chain (the
    // default; re-entered calls of that chain add depth), a shared slot
    // (readOnly), or nothing (interleave).
    const hold = method.interleave ? HOLD_NOTHING : method.readOnly ? HOLD_SHARED : HOLD_KEY
    if (hold === HOLD_KEY && act.chainDepth++ === 0) act.chain = chain
    let result: unknown
    try {
      // An interleave call gets a context of its own: its asks carry its chain, not the holder's.
      result = method.fn(hold === HOLD_NOTHING ? new InterleavedCall(act, chain) : act, payload)
    } catch (e) {
      if (hold === HOLD_KEY) this.#leaveChain(act)
      this.#handlerFailed(act, method, e, replyTo, corr)
      return
    }
    if (isThenable(result)) {
      if (hold === HOLD_KEY) act.busy = true
      else if (hold === HOLD_SHARED) act.sharedRunning++
      else act.interleaved++
      result.then(
        (v) => {
          this.#release(act, hold)
          if (replyTo >= 0) this.#reply(replyTo, corr, v, act, method)
          this.#drainQueue(act)
        },
        (e: unknown) => {
          this.#release(act, hold)
          this.#handlerFailed(act, method, e, replyTo, corr)
          this.#drainQueue(act)
        },
      )
      return
    }
    if (hold === HOLD_KEY) this.#leaveChain(act)
    if (replyTo >= 0) this.#reply(replyTo, corr, result, act, method)
  }

  /** An async call settled: give back what #run took for it. */
  #release(act: Activation, hold: number): void {
    if (hold === HOLD_KEY) this.#leaveChain(act)
    else if (hold === HOLD_SHARED) act.sharedRunning--
    else act.interleaved--
  }

  /** An exclusive call ended: the last one of its chain frees the key. */
  #leaveChain(act: Activation): void {
    if (--act.chainDepth !== 0) return
    act.chain = undefined
    act.busy = false
  }

  /** Start queued messages, in order, while the head may start (key-limits.ts). */
  #drainQueue(act: Activation): void {
    // Interleave calls that waited for the activation to start run now, wherever they wait in the queue.
    if (act.interleaveQueued > 0 && act.interleavable) for (const m of act.takeInterleaved()) this.#run(act, m.method, m.payload, m.replyTo, m.correlationId, m.chain)
    const limits = act.entry.limits
    while (!act.deactivating) {
      const m = act.next(limits)
      if (m === undefined) break
      if (this.#expired(act, m)) continue
      act.lastUsedMs = this.nowMs
      this.#run(act, m.method, m.payload, m.replyTo, m.correlationId, m.chain)
    }
    if (act.idle && act.queue === null && act.deactivateRequested && !act.deactivating) void this.#deactivate(act, 'requested')
  }

  /**
   * Deliver again what waited on an activation that is gone: each keeps its
   * caller's timeout counted from its first arrival, and one whose caller
   * has given up meanwhile is expired instead (#expired, as in #drainQueue).
   */
  #redeliver(gone: Activation, waiting: readonly QueuedMessage[]): void {
    try {
      for (const m of waiting) {
        if (this.#expired(gone, m)) continue
        this.#arrivingTimeoutMs = m.timeoutMs
        this.#arrivingQueuedAt = m.queuedAt
        this.deliver(gone.entry, gone.key, m.method, m.payload, m.replyTo, m.correlationId, undefined, -1, m.chain)
      }
    } finally {
      this.#arrivingTimeoutMs = 0
      this.#arrivingQueuedAt = 0
    }
  }

  #handlerFailed(act: Activation, method: MethodEntry, e: unknown, replyTo: number, corr: number): void {
    // origin 'grain': thrown by user code, so the caller's retry policy never
    // resends it, even when the grain rethrew a retryable code (ERR_GRAIN_TIMEOUT of a nested ask).
    const details = { kind: act.entry.kind, key: act.key, method: method.name, origin: 'grain' }
    const err = GrainClusterError.is(e)
      ? new GrainClusterError(e.code, e.reason, { ...details, ...e.details, origin: 'grain' })
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
      const released = act.released
      if (released !== null) {
        act.released = null
        released(this.#recordOf(act))
      } else if (reason === 'idle') this.#notePassivated(act.entry, act.key)
      if (this.#wants(CATEGORY_BITS.grain)) this.#emit({ type: 'grain.deactivated', kind: act.kind, key: act.key, worker: this.worker, reason: released !== null ? 'handoff' : reason })
      // Messages that arrived during onDeactivate go to a new activation (or
      // the key's new owner), in order, keeping their callers' timeouts.
      if (act.queued === 0) return
      const waiting: QueuedMessage[] = []
      for (let m = act.dequeue(); m !== undefined; m = act.dequeue()) waiting.push(m)
      this.#redeliver(act, waiting)
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

  /** The ActivationRecord of a released activation: the next version, and the snapshot if the hook gives one. */
  #recordOf(act: Activation): ReleasedRecord {
    const rec: ReleasedRecord = { kind: act.kind, key: act.key, version: act.version + 1 }
    const hook = act.entry.def.snapshot
    if (hook === undefined) return rec
    try {
      rec.snapshot = hook(act)
    } catch (e) {
      rec.reason = `snapshot hook of ${act.kind} threw: ${reasonOf(e)}`
      this.#emit({ type: 'grain.handler-failed', kind: act.kind, key: act.key, worker: this.worker, method: 'snapshot', code: 'ERR_GRAIN_HANDLER_FAILED', reason: rec.reason })
    }
    return rec
  }

  /** Passivate every activation idle for at least its kind's idleTtlMs. */
  sweepIdle(now: number = performance.now()): number {
    this.nowMs = now
    let n = 0
    for (const [entry, acts] of this.#activations) {
      const ttl = entry.idleTtlMs
      if (ttl <= 0) continue
      for (const act of acts.values()) {
        if (act.idle && !act.deactivating && act.queue === null && now - act.lastUsedMs >= ttl) {
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
      if (code === 'ERR_GRAIN_PAYLOAD_ENCODE') this.#serializationFailed(act.kind, act.key, method.name, 'encode', 'reply', code, reasonOf(e))
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
      // Through the main thread (another worker's partition, or the cluster
      // places the key): in a keyed run, which it splits by destination.
      else if (!this.sender.sendTell(w.kind!, w.messageType, w.schemaVersion, key, this.#encodePayload)) this.sender.send(w)
    } catch (e) {
      this.#requestEncodeFailed(e, kind, key, method)
      throw e
    } finally {
      this.#payloadValue = undefined
    }
  }

  /** Record a request payload that could not be serialized (other send failures are not serialization). */
  #requestEncodeFailed(e: unknown, kind: string, key: string, method: string): void {
    if (GrainClusterError.is(e, 'ERR_GRAIN_PAYLOAD_ENCODE')) this.#serializationFailed(kind, key, method, 'encode', 'request', e.code, e.reason)
  }

  /**
   * Wrap a request for `pid` in a PID_REQUEST control frame: the main thread
   * knows the cluster and routes it (remote node or this one).
   */
  #sendPidRequest(target: PidTarget, method: string, payload: unknown, flags: number, corr: number, chain?: string, timeoutMs = 0): void {
    const pid = target.pid
    // The request is written straight into the ring, inside the control
    // frame's payload (#writePidRequest): no intermediate copies.
    const w = this.#inner.reset()
    w.kind = target.kindBytes
    w.key = pid.key
    w.partition = partitionOf(pid.key, this.partitions)
    w.messageType = this.#methodId(method)
    w.schemaVersion = target.schemaVersion
    w.flags = flags
    w.correlationId = corr
    w.replyTo = this.self
    w.timeoutMs = timeoutMs
    if (chain !== undefined) w.sender = chain
    this.#payloadValue = payload
    w.payloadWriter = this.#encodePayload
    this.#pidTarget = target
    const c = this.#writer.reset()
    c.flags = FLAGS.CONTROL
    c.messageType = CONTROL_TYPES.PID_REQUEST
    c.payloadWriter = this.#writePidRequest
    try {
      this.sender.send(c)
      // In the ring or its overflow queue, ahead of every later use of the index.
      target.defined = true
    } finally {
      this.#payloadValue = undefined
    }
  }

  /** PIDs grains address, each parsed and encoded once, with its index (see PidTarget). */
  readonly #pids = new TextMemo<PidTarget>((text) => this.#newPidTarget(text))

  /** The PidTarget of `pidText`; throws ERR_PID_INVALID for a malformed PID. */
  #target(pidText: string): PidTarget {
    try {
      return this.#pids.get(pidText)
    } catch (e) {
      throw toGrainClusterError(e, 'ERR_PID_INVALID')
    }
  }
  #nextPidIndex = 0

  #newPidTarget(text: string): PidTarget {
    const pid = parsePid(text) // a malformed PID takes no index
    if (this.#nextPidIndex > 0xffff) {
      // Indexes are u16: start over, and every live PID is sent with its text again.
      this.#pids.clear()
      this.#nextPidIndex = 0
    }
    // The version this node speaks for the kind; 0 (unspecified) for a kind it does not serve.
    const schemaVersion = this.registry.kinds.get(pid.kind)?.schemaVersion ?? 0
    return { pid, utf8: textEncoder.encode(text), index: this.#nextPidIndex++, defined: false, kindBytes: this.#kindBytes(pid.kind), schemaVersion }
  }

  /** A method's message type id: grains mostly repeat one method, so its name is hashed once. */
  #methodId(method: string): number {
    if (method !== this.#lastMethod) {
      this.#lastMethodId = messageTypeId(method)
      this.#lastMethod = method
    }
    return this.#lastMethodId
  }

  /** The request envelope inside a PID_REQUEST (the outer control frame uses #writer). */
  readonly #inner = new EnvelopeWriter()
  /** The PID of the request #inner holds (for #writePidRequest). */
  #pidTarget: PidTarget | undefined = undefined
  /** Grains mostly repeat one method: its id is hashed once. */
  #lastMethod = ''
  #lastMethodId = messageTypeId('')

  /** PID_REQUEST payload (control.ts): [u16 index][u16 text length][PID UTF-8, first use only][request envelope from #inner]. */
  readonly #writePidRequest = (buf: Uint8Array, off: number, max: number): number => {
    const t = this.#pidTarget!
    const text = t.defined ? EMPTY_BYTES : t.utf8
    const head = 4 + text.length
    if (head > max) return -1
    const n = this.#inner.writeInto(buf, off + head, max - head)
    if (n < 0) return -1
    buf[off] = t.index & 0xff
    buf[off + 1] = t.index >>> 8
    buf[off + 2] = text.length & 0xff
    buf[off + 3] = text.length >>> 8
    buf.set(text, off + 4)
    return head + n
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
    const target = this.#target(pid)
    try {
      // Once the main thread knows the PID's index, the tell joins the open
      // PID run (wire/tell-run.ts): ~10 bytes of ring and no envelope here,
      // no envelope to read and no PID to look up there.
      if (target.defined) {
        this.#payloadValue = payload
        if (this.sender.sendPidTell(target.kindBytes, this.#methodId(method), target.schemaVersion, target.index, this.#encodePayload)) return
      }
      this.#sendPidRequest(target, method, payload, 0, 0)
    } catch (e) {
      this.#requestEncodeFailed(e, target.pid.kind, target.pid.key, method)
      throw e
    } finally {
      this.#payloadValue = undefined
    }
  }

  askPid<R>(pid: string, method: string, payload: unknown, timeoutMs: number | undefined, chain: string | undefined): Promise<R> {
    const corr = this.#pending.reserve()
    let target: PidTarget | undefined
    let ms: number
    try {
      target = this.#target(pid)
      ms = this.#timeoutOf(target.pid.kind, timeoutMs)
      this.#sendPidRequest(target, method, payload, FLAGS.ASK, corr, chain, ms)
    } catch (e) {
      if (target !== undefined) this.#requestEncodeFailed(e, target.pid.kind, target.pid.key, method)
      return Promise.reject(toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { pid, method }))
    }
    return this.#await<R>(corr, target.pid.kind, target.pid.key, method, ms)
  }

  /** ctx.whenWritable (see GrainContext). */
  whenWritable(pid: string | undefined, timeoutMs: number | undefined): Promise<void> {
    if (pid === undefined) return this.sender.whenDrained()
    const corr = this.#pending.reserve()
    let target: Pid
    try {
      target = this.#target(pid).pid
      this.#sendControl(CONTROL_TYPES.WRITABLE_REQUEST, timeoutMs === undefined ? { pid } : { pid, timeoutMs }, corr)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e, 'ERR_PID_INVALID', { pid }))
    }
    // The main thread answers by `timeoutMs` (ERR_AUTHORITY_NOT_WRITABLE) and
    // checks it; this timer only covers a main thread that never answers.
    const ms = typeof timeoutMs === 'number' && timeoutMs > 0 ? Math.min(timeoutMs, MAX_TIMER_MS - WRITABLE_REPLY_GRACE_MS) : this.askTimeoutMs
    return this.#await<void>(corr, target.kind, target.key, 'whenWritable', ms + WRITABLE_REPLY_GRACE_MS, false)
  }

  /** ctx.publish / subscribe / unsubscribe (see GrainContext): node.pubsub runs it on the main thread and answers with its result. */
  pubsub<R>(req: PubSubRequest, timeoutMs: number | undefined): Promise<R> {
    const corr = this.#pending.reserve()
    try {
      if (typeof req.topic !== 'string') throw new GrainClusterError('ERR_PUBSUB_INVALID', `a topic name is a string (got ${typeof req.topic})`)
      this.#sendControl(CONTROL_TYPES.PUBSUB_REQUEST, req, corr)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { topic: req.topic }))
    }
    const ms = typeof timeoutMs === 'number' && timeoutMs > 0 ? Math.min(timeoutMs, MAX_TIMER_MS) : this.askTimeoutMs
    return this.#await<R>(corr, 'pubsub', req.topic, req.op, ms, false)
  }

  /**
   * How long an ask waits: its own timeout, else the called kind's
   * rpc.timeoutMs (defineGrain), else the node's. The ask carries it
   * (envelope timeout_ms), so relays on the way wait as long.
   */
  #timeoutOf(kind: string, timeoutMs: number | undefined): number {
    return timeoutMs ?? this.registry.kinds.get(kind)?.def.rpc?.timeoutMs ?? this.askTimeoutMs
  }

  #await<R>(corr: number, kind: string, key: string, method: string, ms: number, measured = true): Promise<R> {
    const t0 = measured ? performance.now() : Number.NaN
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(corr)
        if (measured) this.#callStats.record(kind, method, 'ERR_GRAIN_TIMEOUT', (performance.now() - t0) / 1000)
        reject(new GrainClusterError('ERR_GRAIN_TIMEOUT', `ask ${kind}.${method} to key ${key} got no reply within ${ms} ms`, { kind, key, method, limit: ms }))
      }, ms)
      this.#pending.set(corr, { resolve: resolve as (v: unknown) => void, reject, timer, kind, key, method, t0 })
    })
  }

  /** Sums of the calls this worker's grains made, since the last report. */
  readonly #callStats = new CallStats()

  /**
   * Send the main thread what the grains' calls added since the last
   * report, and the calls waiting per kind now (CALL_STATS), when either
   * changed.
   */
  reportCallStats(): void {
    const queued: Record<string, number> = {}
    let queuedChanged = false
    for (const entry of this.registry.kinds.values()) {
      queued[entry.kind] = entry.load.queued
      if (this.#queuedReported[entry.kind] !== entry.load.queued) queuedChanged = true
    }
    if (this.#callStats.empty && !queuedChanged) return
    try {
      this.#sendControl(CONTROL_TYPES.CALL_STATS, { calls: this.#callStats.take(), queued } satisfies CallStatsReport)
      this.#queuedReported = queued
    } catch {
      // Best effort under backpressure, like events: the next report carries on.
    }
  }
  /** Waiting calls per kind as last reported. */
  #queuedReported: Record<string, number> = {}

  ask<R>(kind: string, key: string, method: string, payload: unknown, timeoutMs: number | undefined, chain: string | undefined): Promise<R> {
    let prepared: { w: EnvelopeWriter; target: number }
    try {
      prepared = this.#prepareRequest(kind, key, method, payload)
    } catch (e) {
      return Promise.reject(toGrainClusterError(e))
    }
    const { w, target } = prepared
    const corr = this.#pending.reserve()
    const ms = this.#timeoutOf(kind, timeoutMs)
    w.flags = FLAGS.ASK
    w.correlationId = corr
    w.replyTo = this.self
    w.timeoutMs = ms
    // The envelope's sender field carries the asking call's chain to the callee, on any node.
    if (chain !== undefined) w.sender = chain
    try {
      if (target === this.worker) this.#pushLocal(w.toBytes())
      else this.sender.send(w)
    } catch (e) {
      this.#requestEncodeFailed(e, kind, key, method)
      return Promise.reject(toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE', { kind, key, method }))
    } finally {
      this.#payloadValue = undefined
    }
    return this.#await<R>(corr, kind, key, method, ms)
  }

  /**
   * A call chain id: this worker's random prefix (48 bits, drawn at start)
   * and a counter, so ids from all workers of all nodes do not collide.
   */
  newCallChain(): string {
    return this.#chainPrefix + (this.#chainSeq++).toString(36)
  }
  readonly #chainPrefix = `${Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, '0')).join('')}.`
  #chainSeq = 0

  #completeAsk(r: EnvelopeReader): void {
    const p = this.#pending.get(r.correlationId)
    if (p === undefined) return // late reply after a timeout: the caller already has its error
    this.#pending.delete(r.correlationId)
    clearTimeout(p.timer)
    const measured = !Number.isNaN(p.t0)
    const seconds = measured ? (performance.now() - p.t0) / 1000 : 0
    const errorReply = (r.flags & FLAGS.ERROR) !== 0
    settleReply(r, this.codec, {
      kind: p.kind,
      key: p.key,
      method: p.method,
      resolve: (v) => {
        if (measured) this.#callStats.record(p.kind, p.method, 'ok', seconds)
        p.resolve(v)
      },
      reject: (err) => {
        // A success reply that rejects could not be decoded here (spec 6.4: recorded, call failed).
        if (!errorReply) this.#serializationFailed(p.kind, p.key, p.method, 'decode', 'reply', err.code, err.reason)
        if (measured) this.#callStats.record(p.kind, p.method, err.code, seconds)
        p.reject(err)
      },
    })
  }

  /** Fail every ask this worker's grains are waiting on (shutdown). */
  failPending(err: (p: { kind: string; key: string; method: string }) => GrainClusterError): void {
    for (const p of this.#pending.takeAll()) {
      clearTimeout(p.timer)
      p.reject(err(p))
    }
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
