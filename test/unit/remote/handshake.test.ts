import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import {
  HANDSHAKE_MESSAGE,
  Handshake,
  type HandshakeMessage,
  type HandshakeOptions,
  type HandshakeResult,
  type HandshakeStep,
  MAC_LABEL,
  NONCE_BYTES,
  PROTOCOL_VERSION,
  decodeHandshakeMessage,
  encodeHandshakeMessage,
  proofInput,
} from '../../../src/remote/transport/handshake.js'
import { seededRng } from '../../helpers/seeded-rng.js'

const rng = seededRng(0x5eed)
function nonce(): Uint8Array {
  return Uint8Array.from({ length: NONCE_BYTES }, () => Math.floor(rng() * 256))
}
function hmac(secret: string): (input: Uint8Array) => Uint8Array {
  return (input) => new Uint8Array(createHmac('sha256', secret).update(input).digest())
}
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

function node(role: HandshakeOptions['role'], over: Partial<HandshakeOptions> = {}): Handshake {
  const dialer = role === 'dialer'
  return new Handshake({
    role,
    clusterName: 'prod',
    authority: dialer ? '10.0.0.1:7000' : '10.0.0.2:7000',
    nodeId: dialer ? 'node-a' : 'node-b',
    nonce: nonce(),
    mac: hmac('s3cret'),
    ...(dialer ? { expectedAuthority: '10.0.0.2:7000' } : {}),
    ...over,
  })
}

interface Run {
  a?: HandshakeResult
  b?: HandshakeResult
  /** Every message each side sent, decoded. */
  fromA: HandshakeMessage[]
  fromB: HandshakeMessage[]
}

/** Run two machines against each other, delivering messages in order until both settle or go quiet. */
function run(a: Handshake, b: Handshake): Run {
  const r: Run = { fromA: [], fromB: [] }
  const toB: Uint8Array[] = []
  const toA: Uint8Array[] = []
  const take = (step: HandshakeStep, from: 'a' | 'b'): void => {
    for (const m of step.send) {
      ;(from === 'a' ? r.fromA : r.fromB).push(decodeHandshakeMessage(m))
      ;(from === 'a' ? toB : toA).push(m)
    }
    if (step.result !== undefined) r[from] = step.result
  }
  take(a.start(), 'a')
  take(b.start(), 'b')
  for (let i = 0; i < 100 && (toA.length > 0 || toB.length > 0); i++) {
    const m1 = toB.shift()
    if (m1 !== undefined) take(b.receive(m1), 'b')
    const m2 = toA.shift()
    if (m2 !== undefined) take(a.receive(m2), 'a')
  }
  return r
}

function failure(r: HandshakeResult | undefined): Extract<HandshakeResult, { ok: false }> {
  expect(r?.ok).toBe(false)
  return r as Extract<HandshakeResult, { ok: false }>
}

describe('Handshake', () => {
  it('establishes both sides, each learning the other, and carries the welcome payload', () => {
    const a = node('dialer')
    const b = node('acceptor', { welcome: (peer) => new TextEncoder().encode(`table for ${peer.nodeId}`) })
    const r = run(a, b)
    expect(r.a).toEqual({ ok: true, peer: { authority: '10.0.0.2:7000', nodeId: 'node-b' }, welcome: new TextEncoder().encode('table for node-a'), lane: 'data' })
    expect(r.b).toMatchObject({ ok: true, peer: { authority: '10.0.0.1:7000', nodeId: 'node-a' }, lane: 'data' })
    expect(a.state).toBe('established')
    expect(b.state).toBe('established')
    expect(r.fromA.map((m) => m.type)).toEqual(['hello', 'proof', 'accept'])
    expect(r.fromB.map((m) => m.type)).toEqual(['hello', 'proof', 'accept'])
    // Frames after the result are not the handshake's business.
    expect(a.receive(new Uint8Array([1, 2, 3]))).toEqual({ send: [] })
  })

  it('refuses a peer with the wrong secret without revealing the expected proof', () => {
    const a = node('dialer', { mac: hmac('wrong') })
    const b = node('acceptor')
    const r = run(a, b)
    const fb = failure(r.b)
    expect(fb.by).toBe('local')
    expect(fb.kind).toBe('bad-proof')
    expect(fb.error.code).toBe('ERR_AUTHORITY_HANDSHAKE_FAILED')
    expect(fb.error.reason).toMatch(/bad proof from 10\.0\.0\.1:7000/)
    expect(fb.error.details).toMatchObject({ refusal: 'bad-proof', authority: '10.0.0.1:7000', nodeId: 'node-a' })
    // The dialer fails too (it cannot verify b's proof with its key), and b sent it a REFUSE.
    expect(failure(r.a).error.code).toBe('ERR_AUTHORITY_HANDSHAKE_FAILED')
    const refuse = r.fromB.find((m) => m.type === 'refuse')
    expect(refuse).toMatchObject({ type: 'refuse', code: 'ERR_AUTHORITY_HANDSHAKE_FAILED' })
    // What b expected from a, and b's own proof: neither appears in anything b said.
    const bProof = r.fromB.find((m) => m.type === 'proof')
    expect(bProof).toBeDefined()
    const said = JSON.stringify(r.fromB.filter((m) => m.type === 'refuse')) + fb.error.reason
    for (const m of r.fromA.filter((x) => x.type === 'proof')) expect(said).not.toContain(hex((m as { mac: Uint8Array }).mac))
    expect(r.fromB.some((m) => m.type === 'accept')).toBe(false)
    expect(b.peerVerified).toBe(false)
  })

  it('refuses another cluster, naming both cluster names', () => {
    const r = run(node('dialer', { clusterName: 'staging' }), node('acceptor'))
    for (const f of [failure(r.a), failure(r.b)]) {
      expect(f.kind).toBe('cluster-name')
      expect(f.error.code).toBe('ERR_AUTHORITY_HANDSHAKE_FAILED')
      expect(f.error.reason).toContain('"staging"')
      expect(f.error.reason).toContain('"prod"')
    }
    expect(failure(r.b).error.details).toMatchObject({ peerClusterName: 'staging', clusterName: 'prod' })
    // Nobody got as far as a PROOF.
    expect([...r.fromA, ...r.fromB].some((m) => m.type === 'proof')).toBe(false)
  })

  it('refuses a peer speaking another protocol version, naming both versions', () => {
    const r = run(node('dialer', { protocolVersion: 2 }), node('acceptor'))
    const fb = failure(r.b)
    expect(fb.kind).toBe('protocol-version')
    expect(fb.error.reason).toMatch(/peer speaks version 2, 10\.0\.0\.2:7000 speaks version 1/)
    expect(fb.error.details).toMatchObject({ peerVersion: 2, version: PROTOCOL_VERSION })
    // The v2 dialer still reads b's REFUSE (its layout is the same in every version).
    const fa = failure(r.a)
    expect(['remote', 'protocol-version']).toContain(fa.kind)
    expect(fa.error.reason).toMatch(/version/)
  })

  it('a refusal from the peer surfaces its code and reason', () => {
    const a = node('dialer')
    a.start()
    const step = a.receive(encodeHandshakeMessage({ type: 'refuse', version: PROTOCOL_VERSION, code: 'ERR_AUTHORITY_CONFLICT', reason: 'node-x holds 10.0.0.1:7000' }))
    const f = failure(step.result)
    expect(f.by).toBe('remote')
    expect(f.error.code).toBe('ERR_AUTHORITY_CONFLICT')
    expect(f.error.reason).toBe('refused by the peer: node-x holds 10.0.0.1:7000')
    expect(step.send).toEqual([])
    // An unknown code from the wire still yields a typed error.
    const b = node('dialer')
    b.start()
    const g = failure(b.receive(encodeHandshakeMessage({ type: 'refuse', version: 9, code: 'ERR_FROM_THE_FUTURE', reason: 'x' })).result)
    expect(g.error.code).toBe('ERR_AUTHORITY_HANDSHAKE_FAILED')
    expect(g.error.details).toMatchObject({ remoteCode: 'ERR_FROM_THE_FUTURE' })
  })

  it('lets the accept hook refuse a verified peer (e.g. a NodeId conflict)', () => {
    const seen: unknown[] = []
    const b = node('acceptor', {
      accept: (peer) => {
        seen.push(peer)
        return { code: 'ERR_AUTHORITY_CONFLICT', reason: `${peer.authority} is held by incarnation node-old` }
      },
    })
    const r = run(node('dialer'), b)
    expect(seen).toEqual([{ authority: '10.0.0.1:7000', nodeId: 'node-a' }])
    const fb = failure(r.b)
    expect(fb.kind).toBe('rejected')
    expect(fb.error.code).toBe('ERR_AUTHORITY_CONFLICT')
    expect(b.peerVerified).toBe(true)
    const fa = failure(r.a)
    expect(fa.by).toBe('remote')
    expect(fa.error.code).toBe('ERR_AUTHORITY_CONFLICT')
    expect(fa.error.reason).toContain('is held by incarnation node-old')
  })

  it('a throwing hook refuses instead of throwing', () => {
    const b = node('acceptor', {
      accept: () => {
        throw new Error('table locked')
      },
    })
    const r = run(node('dialer'), b)
    expect(failure(r.b).error.reason).toContain('table locked')
  })

  describe('replay and reflection', () => {
    it('a PROOF replayed from an earlier session does not verify (fresh verifier nonce)', () => {
      // Record a legitimate session a -> b.
      const first = run(node('dialer'), node('acceptor'))
      expect(first.b?.ok).toBe(true)
      const recorded = first.fromA.find((m) => m.type === 'proof') as Extract<HandshakeMessage, { type: 'proof' }>
      const recordedHello = first.fromA.find((m) => m.type === 'hello')!
      // Attacker without the secret replays a's HELLO and PROOF to b.
      const b = node('acceptor')
      b.start()
      expect(b.receive(encodeHandshakeMessage(recordedHello)).result).toBeUndefined()
      const f = failure(b.receive(encodeHandshakeMessage(recorded)).result)
      expect(f.kind).toBe('bad-proof')
    })

    it("reflecting b's own PROOF back at it (via a second connection) fails", () => {
      // Connection 1: attacker dials b, claiming to be node-x; b's HELLO gives b's nonce n1.
      const b1 = node('acceptor')
      const hello1 = decodeHandshakeMessage(b1.start().send[0]!) as Extract<HandshakeMessage, { type: 'hello' }>
      const claim = { type: 'hello' as const, version: PROTOCOL_VERSION, clusterName: 'prod', authority: '10.0.0.9:7000', nodeId: 'node-x' }
      const xNonce = nonce()
      expect(b1.receive(encodeHandshakeMessage({ ...claim, nonce: xNonce })).send).toHaveLength(1) // b1's PROOF
      // Connection 2: attacker dials b again and sends n1 as its own nonce, hoping b proves over n1.
      const b2 = node('acceptor')
      b2.start()
      const proof2 = decodeHandshakeMessage(b2.receive(encodeHandshakeMessage({ ...claim, nonce: hello1.nonce })).send[0]!)
      expect(proof2.type).toBe('proof')
      // b's proof on connection 2 vouches for b (acceptor role, b's identity), never for node-x.
      const f = failure(b1.receive(encodeHandshakeMessage(proof2)).result)
      expect(f.kind).toBe('bad-proof')
    })

    it("claiming b's own NodeId or echoing b's nonce is refused before any PROOF is sent", () => {
      const b = node('acceptor')
      const hello = decodeHandshakeMessage(b.start().send[0]!) as Extract<HandshakeMessage, { type: 'hello' }>
      // Echo b's HELLO back verbatim (a reflected handshake on the same connection).
      const step = b.receive(encodeHandshakeMessage(hello))
      const f = failure(step.result)
      expect(f.kind).toBe('self-connection')
      expect(step.send.map((m) => decodeHandshakeMessage(m).type)).toEqual(['refuse'])

      const c = node('acceptor')
      const helloC = decodeHandshakeMessage(c.start().send[0]!) as Extract<HandshakeMessage, { type: 'hello' }>
      const g = failure(c.receive(encodeHandshakeMessage({ ...helloC, nodeId: 'node-x', authority: '10.0.0.9:7000' })).result)
      expect(g.kind).toBe('self-connection')
      expect(g.error.reason).toMatch(/nonce/)
    })

    it('the MAC input binds label, role, version, cluster, prover identity and both nonces', () => {
      const base = {
        proverRole: 'dialer' as const,
        protocolVersion: 1,
        clusterName: 'prod',
        proverAuthority: 'h:1',
        proverNodeId: 'n',
        proverNonce: new Uint8Array(32).fill(1),
        verifierNonce: new Uint8Array(32).fill(2),
      }
      const input = proofInput(base)
      expect(new TextDecoder().decode(input.subarray(0, MAC_LABEL.length))).toBe('graincluster-v1')
      const variants = [
        { ...base, proverRole: 'acceptor' as const },
        { ...base, protocolVersion: 2 },
        { ...base, clusterName: 'prodx' },
        { ...base, proverAuthority: 'h:2' },
        { ...base, proverNodeId: 'm' },
        { ...base, proverNonce: new Uint8Array(32).fill(3) },
        { ...base, verifierNonce: new Uint8Array(32).fill(3) },
        // Moving a byte between adjacent strings must change the input (length prefixes).
        { ...base, clusterName: 'pro', proverAuthority: 'dh:1' },
      ]
      for (const v of variants) expect(hex(proofInput(v))).not.toBe(hex(input))
    })
  })

  describe('bad input before the handshake completes', () => {
    it('refuses an application frame that arrives before HELLO', () => {
      const b = node('acceptor')
      b.start()
      const step = b.receive(new Uint8Array([0x42, 0x00, 0x01, 0x02, 0x03]))
      const f = failure(step.result)
      expect(f.kind).toBe('unexpected-message')
      expect(f.error.code).toBe('ERR_AUTHORITY_HANDSHAKE_FAILED')
      expect(f.error.reason).toMatch(/^frame before handshake: expected HELLO, got a frame of unknown type 0x42/)
      expect(decodeHandshakeMessage(step.send[0]!)).toMatchObject({ type: 'refuse', code: 'ERR_AUTHORITY_HANDSHAKE_FAILED' })
      expect(b.state).toBe('failed')
      // After failing, the machine ignores everything.
      expect(b.receive(new Uint8Array([1]))).toEqual({ send: [] })
    })

    it('refuses messages out of order', () => {
      const b = node('acceptor')
      b.start()
      const f = failure(b.receive(encodeHandshakeMessage({ type: 'proof', version: PROTOCOL_VERSION, mac: new Uint8Array(32) })).result)
      expect(f.error.reason).toBe('frame before handshake: expected HELLO, got PROOF')
      const c = node('acceptor')
      c.start()
      const g = failure(c.receive(encodeHandshakeMessage({ type: 'accept', version: PROTOCOL_VERSION, welcome: new Uint8Array(0) })).result)
      expect(g.error.reason).toBe('frame before handshake: expected HELLO, got ACCEPT')
    })

    it('refuses malformed messages with ERR_FRAME_MALFORMED', () => {
      const good = encodeHandshakeMessage({ type: 'hello', version: PROTOCOL_VERSION, clusterName: 'prod', authority: 'h:1', nodeId: 'n', nonce: nonce() })
      const cases: Array<[string, Uint8Array, string, RegExp]> = [
        ['truncated', good.subarray(0, good.length - 1), 'ERR_FRAME_MALFORMED', /truncated nonce/],
        ['trailing', Uint8Array.from([...good, 0]), 'ERR_FRAME_MALFORMED', /1 trailing bytes/],
        ['short header', new Uint8Array([HANDSHAKE_MESSAGE.HELLO]), 'ERR_AUTHORITY_HANDSHAKE_FAILED', /expected HELLO, got a 1-byte frame/],
        ['bad utf-8', Uint8Array.from([HANDSHAKE_MESSAGE.HELLO, 1, 0, 2, 0, 0xff, 0xfe]), 'ERR_FRAME_MALFORMED', /cluster name is not valid UTF-8/],
        ['huge string', Uint8Array.from([HANDSHAKE_MESSAGE.HELLO, 1, 0, 0xff, 0xff]), 'ERR_FRAME_MALFORMED', /cluster name is 65535 bytes \(at most 255\)/],
      ]
      for (const [what, frame, code, reason] of cases) {
        const b = node('acceptor')
        b.start()
        const f = failure(b.receive(frame).result)
        expect([what, f.error.code]).toEqual([what, code])
        expect(f.error.reason).toMatch(reason)
        expect(GrainClusterError.is(f.error)).toBe(true)
      }
    })

    it('never throws on random input, and always refuses it', () => {
      const r = seededRng(42)
      for (let i = 0; i < 2_000; i++) {
        const b = node('acceptor')
        b.start()
        const bytes = Uint8Array.from({ length: Math.floor(r() * 80) }, () => Math.floor(r() * 256))
        const step = b.receive(bytes)
        expect(step.result?.ok).toBe(false)
      }
    })

    it('refuses on timeout with the wait in the reason, and a dialer refuses an unexpected authority', () => {
      const b = node('acceptor')
      b.start()
      const step = b.expire(5_000)
      const f = failure(step.result)
      expect(f.kind).toBe('timeout')
      expect(f.error.reason).toBe('handshake timed out after 5000 ms (waiting for HELLO)')
      expect(decodeHandshakeMessage(step.send[0]!)).toMatchObject({ type: 'refuse', reason: f.error.reason })

      const r = run(node('dialer', { expectedAuthority: '10.0.0.3:7000' }), node('acceptor'))
      expect(failure(r.a).kind).toBe('authority-mismatch')
      expect(failure(r.a).error.reason).toBe('dialed 10.0.0.3:7000 but the peer claims authority 10.0.0.2:7000')
    })
  })

  it("a dialer's control lane reaches the acceptor through its ACCEPT; the acceptor's own ACCEPT names none", () => {
    const a = node('dialer', { lane: 'control' })
    const b = node('acceptor', { schemas: new Map([['counter', [1, 2]]]) })
    const r = run(a, b)
    expect(r.b).toMatchObject({ ok: true, peer: { nodeId: 'node-a' }, lane: 'control' })
    expect(r.a).toMatchObject({ ok: true, peer: { nodeId: 'node-b' }, lane: 'data', schemas: new Map([['counter', [1, 2]]]) })
    // Without schemas of its own, the control dialer writes an empty schema section before the lane byte.
    expect(r.fromA.find((m) => m.type === 'accept')).toMatchObject({ schemas: new Map(), lane: 'control' })
  })

  it('refuses an ACCEPT naming an unknown lane', () => {
    const frame = encodeHandshakeMessage({ type: 'accept', version: 1, welcome: new Uint8Array(0), lane: 'control' })
    frame[frame.length - 1] = 7
    expect(() => decodeHandshakeMessage(frame)).toThrow(/unknown lane 7/)
  })

  it('round-trips every message type and cuts an over-long refusal reason', () => {
    const msgs: HandshakeMessage[] = [
      { type: 'hello', version: 1, clusterName: 'prod', authority: '[::1]:7000', nodeId: 'ñ', nonce: nonce() },
      { type: 'proof', version: 1, mac: nonce() },
      { type: 'accept', version: 1, welcome: new Uint8Array([1, 2, 3]) },
      { type: 'accept', version: 1, welcome: new Uint8Array([4]), schemas: new Map([['k', [3]]]), lane: 'control' },
      { type: 'refuse', version: 1, code: 'ERR_X', reason: 'why' },
    ]
    for (const m of msgs) expect(decodeHandshakeMessage(encodeHandshakeMessage(m))).toEqual(m)
    const long = decodeHandshakeMessage(encodeHandshakeMessage({ type: 'refuse', version: 1, code: 'E', reason: 'é'.repeat(2_000) }))
    expect(long.type === 'refuse' && new TextEncoder().encode(long.reason).length).toBeLessThanOrEqual(1024)
    expect(long.type === 'refuse' && long.reason.endsWith('…')).toBe(true)
  })
})
