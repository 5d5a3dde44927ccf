/**
 * The node-to-node handshake (sans-I/O): message encoding and one state
 * machine per connection. The driver (tcp-transport.ts) feeds it frames and
 * writes what it returns; the HMAC and the nonce are passed in, so this file
 * needs no `node:*` module, no timer and no randomness of its own.
 *
 * Protocol (symmetric; both sides run the same machine):
 *
 *    dialer                                   acceptor
 *      HELLO {version, cluster, authority, nodeId, nonce} ──►
 *      ◄── HELLO {…}
 *      PROOF {mac}  ──►      (sent on receipt of the peer's HELLO)
 *      ◄── PROOF {mac}
 *      ACCEPT {welcome} ──►  (sent once the peer's PROOF verifies and the
 *      ◄── ACCEPT {welcome}   accept hook agrees; else REFUSE {code, reason})
 *
 * A side is established when it has sent its ACCEPT and received the peer's.
 * Each side sends ACCEPT only after verifying the peer's PROOF, and TCP keeps
 * order, so a peer's ACCEPT always arrives after its PROOF was checked here.
 *
 * Message layout (little-endian; `str` = u16 byte length + UTF-8):
 *
 *    0  u8   type   1 HELLO, 2 PROOF, 3 ACCEPT, 4 REFUSE
 *    1  u16  protocol version of the sender
 *    3  body
 *       HELLO   str clusterName, str authority, str nodeId, 32 bytes nonce
 *       PROOF   32 bytes HMAC-SHA256
 *       ACCEPT  u32 length + welcome bytes (opaque; the seed's member table),
 *               then optionally the sender's schema versions: u16 count, and
 *               per kind: str kind, u8 n, n × u16 version (schema-negotiation.ts).
 *               In ACCEPT rather than HELLO: it comes from a peer that proved
 *               the secret, and is not squeezed by the pre-auth frame limit.
 *               Absent (an older peer) = no negotiation; the serving worker
 *               still checks each call's version. Then optionally u8 lane
 *               (0 data, 1 control: the dialer's second connection that
 *               carries heartbeats, see tcp-transport.ts); a lane byte comes
 *               with a schema section (count 0 when there is none). Absent =
 *               data.
 *       REFUSE  str code, str reason
 *
 * The type and version come first so a peer of another protocol version is
 * refused by name ("peer speaks 2, this node speaks 1") before its body is
 * parsed. REFUSE keeps this layout in every version, so a refusal is always
 * readable. Every other byte sequence, including any frame that is not the
 * message expected next, refuses the handshake.
 *
 * MAC input of a PROOF (what `mac` is given; u16-length-prefixed strings, so
 * no two field lists concatenate to the same bytes):
 *
 *    "graincluster-v1"            15 ASCII bytes (domain label)
 *    u8   prover's role           1 dialer, 2 acceptor
 *    u16  protocol version
 *    str  clusterName
 *    str  prover's authority
 *    str  prover's nodeId
 *    32   prover's nonce
 *    32   verifier's nonce
 *
 * Why it resists replay and reflection: the verifier's nonce is fresh for
 * each connection, so a recorded PROOF never verifies again; the prover's
 * identity, nonce and role are in the MAC, so a PROOF that this node computed
 * can only ever vouch for this node itself, and a peer claiming this node's
 * own NodeId, or echoing this node's nonce, is refused.
 */

import { type ErrorCode, GrainClusterError, isErrorCode, reasonOf } from '../../common/errors.js'
import { readUtf8, utf8Length, writeUtf8 } from '../../common/utf8.js'
import { type SchemaVersions, schemaSectionBytes } from '../schema-negotiation.js'

/** Version of this handshake and framing; the peer must speak the same one. */
export const PROTOCOL_VERSION = 1
/** Bytes of a HELLO nonce. */
export const NONCE_BYTES = 32
/** Bytes of an HMAC-SHA256. */
export const MAC_BYTES = 32
/** Longest cluster name, authority or NodeId accepted in a HELLO (UTF-8 bytes). */
export const MAX_HELLO_STRING_BYTES = 255
/** Longest refusal reason sent (longer ones are cut). */
export const MAX_REFUSAL_REASON_BYTES = 1024
/**
 * Frame limit before the peer has proved it holds the secret: HELLO, PROOF
 * and REFUSE fit easily; only ACCEPT (sent after verification) may be large.
 */
export const MAX_UNAUTHENTICATED_FRAME_BYTES = 4096
/** Domain-separation label at the head of every MAC input. */
export const MAC_LABEL = 'graincluster-v1'

/** Wire value of each message's type byte. */
export const HANDSHAKE_MESSAGE = {
  HELLO: 1,
  PROOF: 2,
  ACCEPT: 3,
  REFUSE: 4,
} as const
export type HandshakeMessageType = (typeof HANDSHAKE_MESSAGE)[keyof typeof HANDSHAKE_MESSAGE]

const MESSAGE_NAMES: Record<number, string> = { 1: 'HELLO', 2: 'PROOF', 3: 'ACCEPT', 4: 'REFUSE' }
const HEADER_BYTES = 3

/** A decoded handshake message (`version` is the sender's protocol version). */
export type HandshakeMessage =
  | { type: 'hello'; version: number; clusterName: string; authority: string; nodeId: string; nonce: Uint8Array }
  | { type: 'proof'; version: number; mac: Uint8Array }
  | { type: 'accept'; version: number; welcome: Uint8Array; schemas?: SchemaVersions; lane?: ConnectionLane }
  | { type: 'refuse'; version: number; code: string; reason: string }

/** Who a peer says it is (checked by its PROOF once established). */
export interface PeerIdentity {
  authority: string
  nodeId: string
}

/**
 * What a connection carries: 'data' (everything), or 'control' (a second
 * connection, heartbeats only, never paused by inbound flow control).
 */
export type ConnectionLane = 'data' | 'control'

/** Which end of the TCP connection this side is (part of the MAC input). */
export type HandshakeRole = 'dialer' | 'acceptor'

/** A refusal the accept hook (or the driver) can hand back. */
export interface HandshakeRefusal {
  code: ErrorCode
  reason: string
}

/** Why a handshake failed; in `error.details.refusal` too. */
export type RefusalKind =
  | 'protocol-version'
  | 'cluster-name'
  | 'bad-proof'
  | 'timeout'
  | 'unexpected-message'
  | 'malformed'
  | 'self-connection'
  | 'authority-mismatch'
  | 'rejected'
  | 'remote'

/** Progress of one side: start() → awaiting-hello → awaiting-proof → awaiting-accept → established (or failed). */
export type HandshakeState = 'idle' | 'awaiting-hello' | 'awaiting-proof' | 'awaiting-accept' | 'established' | 'failed'

/** How a handshake ended. */
export type HandshakeResult =
  | { ok: true; peer: PeerIdentity; welcome: Uint8Array; schemas?: SchemaVersions; lane: ConnectionLane }
  | {
      ok: false
      /** Typed error: code ERR_AUTHORITY_HANDSHAKE_FAILED, ERR_FRAME_MALFORMED, or the hook's / peer's code. */
      error: GrainClusterError
      kind: RefusalKind
      /** 'local' when this side refused (and queued a REFUSE), 'remote' when the peer did. */
      by: 'local' | 'remote'
    }

/** What one input produced: messages to write in order, and the outcome once settled. */
export interface HandshakeStep {
  send: Uint8Array[]
  result?: HandshakeResult
}

/** Inputs of one side's handshake: identity, the fresh nonce and the injected HMAC. */
export interface HandshakeOptions {
  role: HandshakeRole
  clusterName: string
  /** This node's advertised authority (host:port). */
  authority: string
  nodeId: string
  /** 32 fresh random bytes for this connection. */
  nonce: Uint8Array
  /** HMAC-SHA256 keyed with the cluster secret; returns 32 bytes. */
  mac: (input: Uint8Array) => Uint8Array
  /** Constant-time comparison of two MACs (the driver passes crypto.timingSafeEqual). */
  macEquals?: (a: Uint8Array, b: Uint8Array) => boolean
  /** Dialer only: the authority dialed; a peer claiming another one is refused. */
  expectedAuthority?: string
  /** Called once the peer's proof verifies; a returned refusal is sent to the peer. */
  accept?: (peer: PeerIdentity) => HandshakeRefusal | undefined
  /** Opaque payload for this side's ACCEPT (e.g. the seed's member table, spec 1.5). */
  welcome?: (peer: PeerIdentity) => Uint8Array | undefined
  /** Version this side speaks; PROTOCOL_VERSION unless testing a mismatch. */
  protocolVersion?: number
  /** Schema versions per grain kind this node serves, sent in its ACCEPT. */
  schemas?: SchemaVersions
  /** The lane this side opens the connection as, sent in its ACCEPT (the dialer's decides). Default 'data'. */
  lane?: ConnectionLane
}

// ---------------------------------------------------------------- encoding

function malformed(reason: string): GrainClusterError {
  return new GrainClusterError('ERR_FRAME_MALFORMED', `malformed handshake message: ${reason}`, { refusal: 'malformed' })
}

/** Cut `s` to at most `max` UTF-8 bytes without splitting a character, marking the cut with '…'. */
function clip(s: string, max: number): string {
  if (utf8Length(s) <= max) return s
  const chars = Array.from(s)
  let bytes = 3 // the '…'
  let i = 0
  for (; i < chars.length; i++) {
    const n = utf8Length(chars[i]!)
    if (bytes + n > max) break
    bytes += n
  }
  return `${chars.slice(0, i).join('')}…`
}

class Writer {
  buf: Uint8Array
  p = 0
  constructor(size: number) {
    this.buf = new Uint8Array(size)
  }
  u8(v: number): void {
    this.buf[this.p++] = v
  }
  u16(v: number): void {
    this.buf[this.p++] = v
    this.buf[this.p++] = v >>> 8
  }
  u32(v: number): void {
    this.u16(v & 0xffff)
    this.u16(v >>> 16)
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.p)
    this.p += b.length
  }
  str(s: string): void {
    const n = writeUtf8(s, this.buf, this.p + 2, this.buf.length - this.p - 2)
    if (n < 0 || n > 0xffff) throw malformed('string does not fit')
    this.u16(n)
    this.p += n
  }
  done(): Uint8Array {
    return this.p === this.buf.length ? this.buf : this.buf.subarray(0, this.p)
  }
}

class Reader {
  p = HEADER_BYTES
  constructor(readonly buf: Uint8Array) {}
  need(n: number, what: string): void {
    if (this.p + n > this.buf.length) throw malformed(`truncated ${what}`)
  }
  u16(what: string): number {
    this.need(2, what)
    const v = this.buf[this.p]! | (this.buf[this.p + 1]! << 8)
    this.p += 2
    return v
  }
  u32(what: string): number {
    const lo = this.u16(what)
    return (lo | (this.u16(what) << 16)) >>> 0
  }
  bytes(n: number, what: string): Uint8Array {
    this.need(n, what)
    const b = this.buf.subarray(this.p, this.p + n)
    this.p += n
    return b
  }
  str(what: string, max: number): string {
    const n = this.u16(what)
    if (n > max) throw malformed(`${what} is ${n} bytes (at most ${max})`)
    const b = this.bytes(n, what)
    try {
      return readUtf8(b, 0, n)
    } catch {
      throw malformed(`${what} is not valid UTF-8`)
    }
  }
  end(): void {
    if (this.p !== this.buf.length) throw malformed(`${this.buf.length - this.p} trailing bytes`)
  }
}

function header(w: Writer, type: HandshakeMessageType, version: number): void {
  w.u8(type)
  w.u16(version)
}

/** Encode a handshake message (the frame body; the driver adds the length prefix). */
export function encodeHandshakeMessage(m: HandshakeMessage): Uint8Array {
  switch (m.type) {
    case 'hello': {
      for (const [name, v] of [['clusterName', m.clusterName], ['authority', m.authority], ['nodeId', m.nodeId]] as const) {
        if (utf8Length(v) > MAX_HELLO_STRING_BYTES) throw malformed(`${name} is longer than ${MAX_HELLO_STRING_BYTES} bytes`)
      }
      if (m.nonce.length !== NONCE_BYTES) throw malformed(`nonce must be ${NONCE_BYTES} bytes`)
      const w = new Writer(HEADER_BYTES + 6 + 3 * MAX_HELLO_STRING_BYTES + NONCE_BYTES)
      header(w, HANDSHAKE_MESSAGE.HELLO, m.version)
      w.str(m.clusterName)
      w.str(m.authority)
      w.str(m.nodeId)
      w.bytes(m.nonce)
      return w.done()
    }
    case 'proof': {
      if (m.mac.length !== MAC_BYTES) throw malformed(`mac must be ${MAC_BYTES} bytes`)
      const w = new Writer(HEADER_BYTES + MAC_BYTES)
      header(w, HANDSHAKE_MESSAGE.PROOF, m.version)
      w.bytes(m.mac)
      return w.done()
    }
    case 'accept': {
      const control = m.lane === 'control'
      const schemas = m.schemas ?? (control ? new Map<string, readonly number[]>() : undefined)
      const w = new Writer(HEADER_BYTES + 4 + m.welcome.length + (schemas === undefined ? 0 : schemaSectionBytes(schemas, utf8Length)) + (control ? 1 : 0))
      header(w, HANDSHAKE_MESSAGE.ACCEPT, m.version)
      w.u32(m.welcome.length)
      w.bytes(m.welcome)
      if (schemas !== undefined) {
        if (schemas.size > 0xffff) throw malformed('more than 65535 grain kinds')
        w.u16(schemas.size)
        for (const [kind, vs] of schemas) {
          if (utf8Length(kind) > MAX_HELLO_STRING_BYTES) throw malformed(`grain kind ${kind} is longer than ${MAX_HELLO_STRING_BYTES} bytes`)
          if (vs.length > 0xff) throw malformed(`grain kind ${kind} lists more than 255 schema versions`)
          w.str(kind)
          w.u8(vs.length)
          for (const v of vs) w.u16(v)
        }
      }
      if (control) w.u8(1)
      return w.done()
    }
    case 'refuse': {
      const code = clip(m.code, MAX_HELLO_STRING_BYTES)
      const reason = clip(m.reason, MAX_REFUSAL_REASON_BYTES)
      const w = new Writer(HEADER_BYTES + 4 + utf8Length(code) + utf8Length(reason))
      header(w, HANDSHAKE_MESSAGE.REFUSE, m.version)
      w.str(code)
      w.str(reason)
      return w.done()
    }
  }
}

/** Type and version of a frame, without parsing the body; undefined if it is shorter than the header. */
export function peekHandshakeHeader(frame: Uint8Array): { type: number; version: number } | undefined {
  if (frame.length < HEADER_BYTES) return undefined
  return { type: frame[0]!, version: frame[1]! | (frame[2]! << 8) }
}

/**
 * Decode a handshake message of the given layout version (the body's layout
 * is that of `PROTOCOL_VERSION`; REFUSE is the same in every version).
 * Throws ERR_FRAME_MALFORMED. Byte fields are zero-copy views of `frame`.
 */
export function decodeHandshakeMessage(frame: Uint8Array): HandshakeMessage {
  const h = peekHandshakeHeader(frame)
  if (h === undefined) throw malformed(`frame of ${frame.length} bytes is shorter than the ${HEADER_BYTES}-byte header`)
  const r = new Reader(frame)
  switch (h.type) {
    case HANDSHAKE_MESSAGE.HELLO: {
      const clusterName = r.str('cluster name', MAX_HELLO_STRING_BYTES)
      const authority = r.str('authority', MAX_HELLO_STRING_BYTES)
      const nodeId = r.str('node id', MAX_HELLO_STRING_BYTES)
      const nonce = r.bytes(NONCE_BYTES, 'nonce')
      r.end()
      return { type: 'hello', version: h.version, clusterName, authority, nodeId, nonce }
    }
    case HANDSHAKE_MESSAGE.PROOF: {
      const mac = r.bytes(MAC_BYTES, 'mac')
      r.end()
      return { type: 'proof', version: h.version, mac }
    }
    case HANDSHAKE_MESSAGE.ACCEPT: {
      const n = r.u32('welcome length')
      const welcome = r.bytes(n, 'welcome')
      if (r.p === frame.length) return { type: 'accept', version: h.version, welcome }
      const count = r.u16('schema count')
      const schemas = new Map<string, readonly number[]>()
      for (let i = 0; i < count; i++) {
        const kind = r.str('schema kind', MAX_HELLO_STRING_BYTES)
        r.need(1, 'schema version count')
        const nv = frame[r.p++]!
        const vs: number[] = []
        for (let j = 0; j < nv; j++) vs.push(r.u16('schema version'))
        schemas.set(kind, vs.sort((a, b) => a - b))
      }
      if (r.p === frame.length) return { type: 'accept', version: h.version, welcome, schemas }
      r.need(1, 'lane')
      const lane = frame[r.p++]!
      if (lane > 1) throw malformed(`unknown lane ${lane}`)
      r.end()
      return { type: 'accept', version: h.version, welcome, schemas, lane: lane === 1 ? 'control' : 'data' }
    }
    case HANDSHAKE_MESSAGE.REFUSE: {
      const code = r.str('refusal code', MAX_HELLO_STRING_BYTES)
      const reason = r.str('refusal reason', 0xffff)
      r.end()
      return { type: 'refuse', version: h.version, code, reason }
    }
    default:
      throw malformed(`unknown message type ${h.type}`)
  }
}

/** The bytes a PROOF's MAC is computed over (layout in the file header). */
export function proofInput(p: {
  proverRole: HandshakeRole
  protocolVersion: number
  clusterName: string
  proverAuthority: string
  proverNodeId: string
  proverNonce: Uint8Array
  verifierNonce: Uint8Array
}): Uint8Array {
  const strings = utf8Length(p.clusterName) + utf8Length(p.proverAuthority) + utf8Length(p.proverNodeId)
  const w = new Writer(MAC_LABEL.length + 1 + 2 + 6 + strings + p.proverNonce.length + p.verifierNonce.length)
  for (let i = 0; i < MAC_LABEL.length; i++) w.u8(MAC_LABEL.charCodeAt(i))
  w.u8(p.proverRole === 'dialer' ? 1 : 2)
  w.u16(p.protocolVersion)
  w.str(p.clusterName)
  w.str(p.proverAuthority)
  w.str(p.proverNodeId)
  w.bytes(p.proverNonce)
  w.bytes(p.verifierNonce)
  return w.done()
}

/** Constant-time equality for equal-length byte strings (fallback when no macEquals is given). */
export function constantTimeEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let d = 0
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!
  return d === 0
}

// ---------------------------------------------------------------- state machine

const EXPECTED: Record<HandshakeState, string> = {
  idle: 'nothing (not started)',
  'awaiting-hello': 'HELLO',
  'awaiting-proof': 'PROOF',
  'awaiting-accept': 'ACCEPT',
  established: 'nothing (established)',
  failed: 'nothing (failed)',
}

/**
 * One side of one connection's handshake. Call start() once the connection
 * is open, receive() with each frame until `result` is set, and expire()
 * when the driver's handshake timer fires. After a result, inputs are
 * ignored (they return an empty step).
 */
export class Handshake {
  readonly role: HandshakeRole
  readonly #o: HandshakeOptions
  readonly #version: number
  #state: HandshakeState = 'idle'
  #peer: PeerIdentity | undefined
  #peerNonce: Uint8Array | undefined
  #verified = false

  constructor(options: HandshakeOptions) {
    if (options.nonce.length !== NONCE_BYTES) throw new GrainClusterError('ERR_CONFIG_INVALID', `handshake nonce must be ${NONCE_BYTES} bytes (got ${options.nonce.length})`)
    this.role = options.role
    this.#o = options
    this.#version = options.protocolVersion ?? PROTOCOL_VERSION
  }

  get state(): HandshakeState {
    return this.#state
  }

  /** True once the peer's PROOF verified (the driver then lifts the pre-authentication frame limit). */
  get peerVerified(): boolean {
    return this.#verified
  }

  /** Identity the peer claimed in its HELLO (proved only once `peerVerified`). */
  get claimedPeer(): PeerIdentity | undefined {
    return this.#peer
  }

  /** Send our HELLO. */
  start(): HandshakeStep {
    if (this.#state !== 'idle') return { send: [] }
    this.#state = 'awaiting-hello'
    const o = this.#o
    return { send: [encodeHandshakeMessage({ type: 'hello', version: this.#version, clusterName: o.clusterName, authority: o.authority, nodeId: o.nodeId, nonce: o.nonce })] }
  }

  /** Feed one frame received from the peer. Never throws for bad input: it refuses instead. */
  receive(frame: Uint8Array): HandshakeStep {
    const state = this.#state
    if (state === 'established' || state === 'failed' || state === 'idle') return { send: [] }
    const h = peekHandshakeHeader(frame)
    if (h === undefined || MESSAGE_NAMES[h.type] === undefined) {
      const got = h === undefined ? `a ${frame.length}-byte frame` : `a frame of unknown type 0x${h.type.toString(16).padStart(2, '0')}`
      return this.#refuse('unexpected-message', 'ERR_AUTHORITY_HANDSHAKE_FAILED', `frame before handshake: expected ${EXPECTED[state]}, got ${got}`)
    }
    // A refusal is readable in any version; answer nothing to it.
    if (h.type === HANDSHAKE_MESSAGE.REFUSE) {
      let m: HandshakeMessage
      try {
        m = decodeHandshakeMessage(frame)
      } catch (e) {
        return this.#refuse('malformed', 'ERR_FRAME_MALFORMED', (e as GrainClusterError).reason)
      }
      if (m.type === 'refuse') return this.#remoteRefusal(m.code, m.reason)
    }
    if (h.version !== this.#version) {
      return this.#refuse(
        'protocol-version',
        'ERR_AUTHORITY_HANDSHAKE_FAILED',
        `protocol version mismatch: the peer speaks version ${h.version}, ${this.#o.authority} speaks version ${this.#version}`,
        { peerVersion: h.version, version: this.#version },
      )
    }
    let m: HandshakeMessage
    try {
      m = decodeHandshakeMessage(frame)
    } catch (e) {
      return this.#refuse('malformed', 'ERR_FRAME_MALFORMED', GrainClusterError.is(e) ? e.reason : String(e))
    }
    switch (m.type) {
      case 'hello':
        if (state !== 'awaiting-hello') return this.#unexpected('HELLO')
        return this.#onHello(m)
      case 'proof':
        if (state !== 'awaiting-proof') return this.#unexpected('PROOF')
        return this.#onProof(m.mac)
      case 'accept':
        if (state !== 'awaiting-accept') return this.#unexpected('ACCEPT')
        this.#state = 'established'
        return { send: [], result: { ok: true, peer: this.#peer!, welcome: m.welcome, ...(m.schemas === undefined ? {} : { schemas: m.schemas }), lane: m.lane ?? 'data' } }
      case 'refuse':
        return this.#remoteRefusal(m.code, m.reason)
    }
  }

  /** The driver's handshake timer fired. */
  expire(timeoutMs: number): HandshakeStep {
    if (this.#state === 'established' || this.#state === 'failed') return { send: [] }
    return this.#refuse('timeout', 'ERR_AUTHORITY_HANDSHAKE_FAILED', `handshake timed out after ${timeoutMs} ms (waiting for ${EXPECTED[this.#state]})`, { timeoutMs })
  }

  #onHello(m: Extract<HandshakeMessage, { type: 'hello' }>): HandshakeStep {
    const o = this.#o
    this.#peer = { authority: m.authority, nodeId: m.nodeId }
    if (m.clusterName !== o.clusterName) {
      return this.#refuse(
        'cluster-name',
        'ERR_AUTHORITY_HANDSHAKE_FAILED',
        `cluster name mismatch: ${m.authority} is in cluster "${m.clusterName}", ${o.authority} is in cluster "${o.clusterName}"`,
        { peerClusterName: m.clusterName, clusterName: o.clusterName },
      )
    }
    if (m.nodeId === o.nodeId) {
      return this.#refuse('self-connection', 'ERR_AUTHORITY_HANDSHAKE_FAILED', `the peer claims this node's own NodeId ${o.nodeId} (a connection to itself, or a reflected handshake)`)
    }
    if (constantTimeEquals(m.nonce, o.nonce)) {
      return this.#refuse('self-connection', 'ERR_AUTHORITY_HANDSHAKE_FAILED', "the peer echoed this node's own nonce (a reflected handshake)")
    }
    if (o.expectedAuthority !== undefined && m.authority !== o.expectedAuthority) {
      return this.#refuse('authority-mismatch', 'ERR_AUTHORITY_HANDSHAKE_FAILED', `dialed ${o.expectedAuthority} but the peer claims authority ${m.authority}`)
    }
    this.#peerNonce = m.nonce
    this.#state = 'awaiting-proof'
    const mac = o.mac(
      proofInput({
        proverRole: this.role,
        protocolVersion: this.#version,
        clusterName: o.clusterName,
        proverAuthority: o.authority,
        proverNodeId: o.nodeId,
        proverNonce: o.nonce,
        verifierNonce: m.nonce,
      }),
    )
    return { send: [encodeHandshakeMessage({ type: 'proof', version: this.#version, mac })] }
  }

  #onProof(mac: Uint8Array): HandshakeStep {
    const o = this.#o
    const peer = this.#peer!
    const expected = o.mac(
      proofInput({
        proverRole: this.role === 'dialer' ? 'acceptor' : 'dialer',
        protocolVersion: this.#version,
        clusterName: o.clusterName,
        proverAuthority: peer.authority,
        proverNodeId: peer.nodeId,
        proverNonce: this.#peerNonce!,
        verifierNonce: o.nonce,
      }),
    )
    const equal = o.macEquals ?? constantTimeEquals
    if (expected.length !== mac.length || !equal(expected, mac)) {
      // Never say what was expected: that would hand out a valid proof.
      return this.#refuse('bad-proof', 'ERR_AUTHORITY_HANDSHAKE_FAILED', `bad proof from ${peer.authority}: it does not hold this cluster's secret`)
    }
    this.#verified = true
    let welcome: Uint8Array
    try {
      const refusal = o.accept?.(peer)
      if (refusal !== undefined) return this.#refuse('rejected', refusal.code, refusal.reason)
      welcome = o.welcome?.(peer) ?? new Uint8Array(0)
    } catch (e) {
      // A throwing hook refuses this peer; it must not escape into the driver's socket callback.
      const code = GrainClusterError.is(e) ? e.code : 'ERR_AUTHORITY_HANDSHAKE_FAILED'
      return this.#refuse('rejected', code, `accept/welcome hook failed: ${reasonOf(e)}`)
    }
    this.#state = 'awaiting-accept'
    return { send: [encodeHandshakeMessage({ type: 'accept', version: this.#version, welcome, ...(o.schemas === undefined ? {} : { schemas: o.schemas }), ...(o.lane === 'control' ? { lane: 'control' as const } : {}) })] }
  }

  #unexpected(got: string): HandshakeStep {
    return this.#refuse('unexpected-message', 'ERR_AUTHORITY_HANDSHAKE_FAILED', `frame before handshake: expected ${EXPECTED[this.#state]}, got ${got}`)
  }

  #details(kind: RefusalKind, extra: Record<string, unknown> = {}): Record<string, unknown> {
    const d: Record<string, unknown> = { refusal: kind, ...extra }
    if (this.#peer !== undefined) {
      d['authority'] = this.#peer.authority
      d['nodeId'] = this.#peer.nodeId
    }
    return d
  }

  #refuse(kind: RefusalKind, code: ErrorCode, reason: string, extra?: Record<string, unknown>): HandshakeStep {
    this.#state = 'failed'
    const error = new GrainClusterError(code, reason, this.#details(kind, extra))
    return {
      send: [encodeHandshakeMessage({ type: 'refuse', version: this.#version, code, reason })],
      result: { ok: false, error, kind, by: 'local' },
    }
  }

  #remoteRefusal(code: string, reason: string): HandshakeStep {
    this.#state = 'failed'
    const known = isErrorCode(code) ? code : 'ERR_AUTHORITY_HANDSHAKE_FAILED'
    const error = new GrainClusterError(known, `refused by the peer: ${reason}`, this.#details('remote', { remoteCode: code }))
    return { send: [], result: { ok: false, error, kind: 'remote', by: 'remote' } }
  }
}
