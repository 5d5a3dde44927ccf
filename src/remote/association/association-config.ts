/**
 * Settings shared by every association of a node (one per remote
 * authority), their defaults and their validation. Sans-I/O.
 */

import { GrainClusterError } from '../../common/errors.js'

/** Messages a disconnected authority may have waiting. */
export const DEFAULT_DEFERRED_QUEUE_LIMIT = 10_000
/** Frame bytes a disconnected authority may have waiting. */
export const DEFAULT_DEFERRED_QUEUE_BYTES = 64 * 1024 * 1024 // 64 MiB
/** How long a quarantine lasts unless released by hand (design §3.8, §3.13). */
export const DEFAULT_QUARANTINE_DEADLINE_MS = 30_000 // 30 s
/** Consecutive connection failures that quarantine an authority. */
export const DEFAULT_MAX_CONSECUTIVE_FAILURES = 5
/** Longest inbound-flow pause of one peer's connection (well under every failure-detector profile's acceptable heartbeat pause). */
export const DEFAULT_MAX_INBOUND_PAUSE_MS = 250
/** Outbound bytes a writable authority may have waiting in the transport (GrainNode.isWritable). */
export const DEFAULT_WRITABLE_BUFFERED_BYTES = 4 * 1024 * 1024 // 4 MiB

export interface AssociationConfig {
  /**
   * Most messages held in one authority's deferred queue while it is not
   * connected; on overflow the oldest is dead-lettered (spec 3.2). Default
   * 10 000. Integer ≥ 1.
   */
  readonly deferredQueueLimit: number
  /**
   * Most frame bytes held in one authority's deferred queue; on overflow the
   * oldest messages are dead-lettered until the new one fits, and a frame
   * larger than this is refused outright. Default 64 MiB. Integer ≥ 1.
   */
  readonly deferredQueueBytes: number
  /**
   * How long a quarantine lasts before it is released automatically (the
   * authority goes back to Disconnected, spec 4.3), ms. Default 30 000 (30 s).
   * Integer ≥ 1.
   */
  readonly quarantineDeadlineMs: number
  /**
   * Consecutive failures (failed dials, refused or broken connections) after
   * which the authority is quarantined; a successful connection resets the
   * count. Default 5. Integer ≥ 1.
   */
  readonly maxConsecutiveFailures: number
  /**
   * Inbound flow control (remote/inbound-flow.ts): the longest time this
   * node stops reading a peer's connection while the peer's frames wait for
   * a full worker ring, when the peer has no control lane (heartbeats then
   * wait behind the data); afterwards it reads that connection for as long
   * before it may pause it again. Keep it well under the failure detector's
   * acceptable heartbeat pause. With a control lane (cluster.controlLane, the
   * default) a pause lasts until the backlog drains. Default 250. Integer ≥ 1.
   */
  readonly maxInboundPauseMs: number
  /**
   * Sender-side flow control (GrainNode.isWritable / whenWritable with a
   * remote PID): the PID counts as writable while its authority is
   * connected, nothing waits in its deferred queue and at most this many
   * bytes wait in the transport's outbound buffer (on top of the kernel's
   * socket buffer). Default 4 MiB. Integer ≥ 1.
   */
  readonly writableBufferedBytes: number
}

export const ASSOCIATION_DEFAULTS: AssociationConfig = Object.freeze({
  deferredQueueLimit: DEFAULT_DEFERRED_QUEUE_LIMIT,
  deferredQueueBytes: DEFAULT_DEFERRED_QUEUE_BYTES,
  quarantineDeadlineMs: DEFAULT_QUARANTINE_DEADLINE_MS,
  maxConsecutiveFailures: DEFAULT_MAX_CONSECUTIVE_FAILURES,
  maxInboundPauseMs: DEFAULT_MAX_INBOUND_PAUSE_MS,
  writableBufferedBytes: DEFAULT_WRITABLE_BUFFERED_BYTES,
})

const KEYS = Object.keys(ASSOCIATION_DEFAULTS) as ReadonlyArray<keyof AssociationConfig>

const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : String(v))

/**
 * Every problem with `input` (a partial AssociationConfig; absent keys take
 * their default), as `path.key must be … (got …)` lines. Empty when valid.
 */
export function validateAssociationConfig(input: unknown, path = 'association'): string[] {
  if (input === undefined) return []
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return [`${path} must be an object (got ${show(input)})`]
  const issues: string[] = []
  const o = input as Record<string, unknown>
  for (const k of Object.keys(o)) {
    if (!(KEYS as readonly string[]).includes(k)) issues.push(`${path}.${k} is not a known setting (known: ${KEYS.join(', ')})`)
  }
  for (const k of KEYS) {
    const v = o[k]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) issues.push(`${path}.${k} must be an integer ≥ 1 (got ${show(v)})`)
  }
  return issues
}

/**
 * Defaults merged with `input`, validated in one pass and frozen. Throws one
 * ERR_CONFIG_INVALID whose `details.issues` lists every problem.
 */
export function resolveAssociationConfig(input?: Partial<AssociationConfig>, path = 'association'): AssociationConfig {
  const issues = validateAssociationConfig(input, path)
  if (issues.length > 0) throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid association settings: ${issues.join('; ')}`, { issues })
  const out: Record<string, number> = { ...ASSOCIATION_DEFAULTS }
  for (const k of KEYS) {
    const v = input?.[k]
    if (v !== undefined) out[k] = v
  }
  return Object.freeze(out) as unknown as AssociationConfig
}
