/**
 * The one error class of graincluster. Every failure a user can see is a
 * GrainClusterError with a stable `code` from ERROR_CODES, a human `reason`
 * (also the `message`) and the key/authority involved in `details`.
 *
 * Errors cross threads and sockets as plain data (`toWire`/`fromWire`):
 * structuredClone drops custom classes, so the receiving side rebuilds them.
 */

export const ERROR_CODES = {
  ERR_GRAIN_TIMEOUT: { http: 504, retryable: true, summary: 'A grain call did not answer before its deadline.' },
  ERR_GRAIN_UNKNOWN_KIND: { http: 404, retryable: false, summary: 'No grain kind of that name is registered.' },
  ERR_GRAIN_UNKNOWN_METHOD: { http: 404, retryable: false, summary: 'The grain kind has no handler for that message type.' },
  ERR_GRAIN_HANDLER_FAILED: { http: 500, retryable: false, summary: 'The grain handler threw or rejected.' },
  ERR_GRAIN_ACTIVATION_FAILED: { http: 500, retryable: false, summary: 'onActivate threw or rejected; the activation was discarded.' },
  ERR_GRAIN_INVALID_KEY: { http: 400, retryable: false, summary: 'The grain key is empty, too long or not a string.' },
  ERR_GRAIN_DEFINITION_INVALID: { http: 500, retryable: false, summary: 'A grain definition is malformed.' },
  ERR_GRAIN_PAYLOAD_ENCODE: { http: 400, retryable: false, summary: 'The message payload could not be serialized.' },
  ERR_GRAIN_PAYLOAD_DECODE: { http: 400, retryable: false, summary: 'The message payload could not be deserialized.' },
  ERR_GRAIN_PAYLOAD_TOO_LARGE: { http: 413, retryable: false, summary: 'The encoded message exceeds the maximum frame size.' },
  ERR_FRAME_MALFORMED: { http: 400, retryable: false, summary: 'A frame or envelope failed bounds or structure checks.' },
  ERR_RING_FRAME_TOO_LARGE: { http: 413, retryable: false, summary: 'A frame is larger than the ring can ever hold.' },
  ERR_RING_FULL: { http: 503, retryable: true, summary: 'The ring and its bounded overflow queue are full (backpressure).' },
  ERR_WORKER_CRASHED: { http: 503, retryable: true, summary: 'The worker thread that owned the grain died while the call was in flight.' },
  ERR_WORKER_UNAVAILABLE: { http: 503, retryable: true, summary: 'No running worker can take the message (restarting or shut down).' },
  ERR_NODE_CLOSED: { http: 503, retryable: false, summary: 'The node is shut down; it accepts no more calls.' },
  ERR_CONFIG_INVALID: { http: 500, retryable: false, summary: 'One or more configuration values are invalid.' },
  ERR_CONFIG_MISSING: { http: 500, retryable: false, summary: 'A required configuration value is missing.' },
  ERR_FRAME_TOO_LARGE: { http: 413, retryable: false, summary: 'A transport frame exceeds the maximum frame size.' },
  ERR_AUTHORITY_HANDSHAKE_FAILED: { http: 403, retryable: false, summary: 'A peer failed the cluster handshake (protocol, cluster name or secret).' },
  ERR_AUTHORITY_CONFLICT: { http: 409, retryable: false, summary: 'Another incarnation (NodeId) already holds this authority in the membership.' },
  ERR_AUTHORITY_UNREACHABLE: { http: 503, retryable: true, summary: 'The authority is not connected or not reachable.' },
  ERR_AUTHORITY_MINORITY: { http: 503, retryable: true, summary: 'This node is on the minority side of a partition and refuses membership writes.' },
  ERR_AUTHORITY_QUARANTINED: { http: 503, retryable: true, summary: 'The authority is quarantined: sends and connections are refused until the deadline or a manual release.' },
  ERR_AUTHORITY_REMOVED: { http: 410, retryable: false, summary: 'The authority (this incarnation) has been removed from the cluster.' },
  ERR_AUTHORITY_NOT_WRITABLE: { http: 503, retryable: true, summary: 'The authority did not become writable (connected, nothing deferred, outbound buffer under its mark) before the deadline.' },
  ERR_AUTHORITY_QUEUE_OVERFLOW: { http: 503, retryable: true, summary: 'The deferred queue of a disconnected authority was full; the oldest message was dropped.' },
  ERR_PID_INVALID: { http: 400, retryable: false, summary: 'A PID does not have the canonical form grain://host:port/kind/key[#nodeId].' },
  ERR_GRAIN_MOVED: { http: 503, retryable: true, summary: 'The key is moving to another owner (membership change); retry resolves the new owner.' },
  ERR_GRAIN_SNAPSHOT_MISSING: { http: 503, retryable: false, summary: 'The grain kind requires a state snapshot to activate and none was handed over or persisted.' },
  ERR_GRAIN_QUEUE_FULL: { http: 429, retryable: false, summary: 'The per-key queue is at its queueDepth and the policy is reject: the new call was refused.' },
  ERR_GRAIN_DEADLOCK: {
    http: 508,
    retryable: false,
    summary: 'A call came back to the grain whose call started it (a call cycle) and the kind does not let call chains re-enter: it was refused instead of waiting behind that call until its timeout.',
  },
  ERR_GRAIN_DROPPED: { http: 503, retryable: false, summary: 'The per-key queue was full and the policy is dropOldest: this queued call was dropped for a newer one.' },
  ERR_SCHEMA_MISMATCH: { http: 409, retryable: false, summary: 'Caller and grain have no schema version in common for this kind.' },
  ERR_RPC_BAD_REQUEST: { http: 400, retryable: false, summary: 'An RPC request is malformed (bad JSON, failed schema validation, bad correlation id).' },
  ERR_RPC_UNAUTHORIZED: { http: 401, retryable: false, summary: 'The RPC route needs a valid bearer token.' },
  ERR_RPC_RESULT_INVALID: { http: 500, retryable: false, summary: "The grain's result does not fit its method's result schema: the call ran, its result was not sent." },
  ERR_RPC_BODY_TOO_LARGE: { http: 413, retryable: false, summary: 'The RPC request body exceeds the configured size limit.' },
  ERR_RPC_METRICS_DISABLED: { http: 404, retryable: false, summary: 'Metrics collection is disabled on this node; events still flow on the EventStream.' },
  ERR_RPC_TOO_MANY_IN_FLIGHT: { http: 429, retryable: true, summary: 'A WebSocket connection has as many calls in flight (or as many reply bytes unsent) as the front allows; retry once replies arrive.' },
  ERR_PUBSUB_INVALID: { http: 400, retryable: false, summary: 'A topic name, topic settings or subscriber is malformed (unknown grain kind or method, bad option).' },
  ERR_PUBSUB_TOPIC_NOT_FOUND: { http: 404, retryable: false, summary: 'No topic of that name exists in the cluster (as this node knows it): nothing was published or subscribed.' },
  ERR_PUBSUB_TOPIC_CONFLICT: { http: 409, retryable: false, summary: 'The topic exists with other settings; delete it before creating it with new ones.' },
  ERR_PUBSUB_NO_SUBSCRIBERS: { http: 409, retryable: false, summary: 'The topic has no subscribers: the publish was not delivered anywhere and counts as failed.' },
  ERR_PUBSUB_REGISTRY_FULL: { http: 507, retryable: false, summary: 'The replicated topic registry is at its size limit (gossip carries it whole to every newcomer): no new topic or subscription until some are deleted.' },
  ERR_PUBSUB_DEFERRED_FULL: { http: 503, retryable: false, summary: "A delivery waiting for redelivery was dropped because the topic's deferLimit of waiting deliveries was reached." },
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export interface ErrorDetails {
  kind?: string
  key?: string
  method?: string
  pid?: string
  authority?: string
  nodeId?: string
  worker?: number
  limit?: number
  size?: number
  issues?: string[]
  [extra: string]: unknown
}

/** What went wrong, in words, for anything thrown (an Error's message, else the value). */
export function reasonOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

const kBrand = Symbol.for('graincluster.error')

export class GrainClusterError extends Error {
  readonly code: ErrorCode
  readonly reason: string
  readonly details: ErrorDetails
  readonly retryable: boolean
  readonly [kBrand] = true

  constructor(code: ErrorCode, reason: string, details: ErrorDetails = {}, options?: ErrorOptions) {
    super(reason, options)
    this.name = 'GrainClusterError'
    this.code = code
    this.reason = reason
    this.details = details
    this.retryable = ERROR_CODES[code].retryable
  }

  /** HTTP status that the front maps this code to. */
  get httpStatus(): number {
    return ERROR_CODES[this.code].http
  }

  /** Brand check that works across module copies and realms. */
  static is(u: unknown, code?: ErrorCode): u is GrainClusterError {
    return (
      typeof u === 'object' &&
      u !== null &&
      (u as Record<symbol, unknown>)[kBrand] === true &&
      (code === undefined || (u as GrainClusterError).code === code)
    )
  }

  override toString(): string {
    return `${this.name} [${this.code}]: ${this.reason}`
  }
}

/** Plain-data form of an error, safe for structuredClone and for the wire. */
export interface WireError {
  code: string
  reason: string
  details: ErrorDetails
}

export function toWire(e: GrainClusterError): WireError {
  return { code: e.code, reason: e.reason, details: e.details }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)
}

/** Rebuild a typed error from its wire form; unknown codes become a malformed-frame error. */
export function fromWire(w: unknown): GrainClusterError {
  if (typeof w === 'object' && w !== null) {
    const o = w as Partial<WireError>
    const details = typeof o.details === 'object' && o.details !== null ? o.details : {}
    const reason = typeof o.reason === 'string' ? o.reason : 'no reason given'
    if (isErrorCode(o.code)) return new GrainClusterError(o.code, reason, details)
    return new GrainClusterError('ERR_FRAME_MALFORMED', `unknown error code ${String(o.code)} on the wire: ${reason}`, details)
  }
  return new GrainClusterError('ERR_FRAME_MALFORMED', 'error frame is not an object')
}

/**
 * Normalise anything caught at an edge (ring, handler, transport) into a
 * GrainClusterError. Non-graincluster errors become `fallback` with the
 * original as `cause`.
 */
export function toGrainClusterError(
  u: unknown,
  fallback: ErrorCode = 'ERR_GRAIN_HANDLER_FAILED',
  details: ErrorDetails = {},
): GrainClusterError {
  if (GrainClusterError.is(u)) return u
  const message = u instanceof Error ? u.message : String(u)
  return new GrainClusterError(fallback, message, details, { cause: u })
}
