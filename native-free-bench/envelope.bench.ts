/**
 * envelope scope (tinybench, one thread): encode one message envelope to
 * bytes and read it back, three ways:
 *
 *   - EnvelopeWriter.writeInto + EnvelopeReader.reset (the runtime's path)
 *   - the generic flatbuffers Builder + generated Envelope reader
 *   - JSON.stringify + JSON.parse of a plain object (baseline), payload as
 *     base64 (Buffer.toString / Buffer.from): how one carries opaque bytes
 *     in JSON; plus a row that also UTF-8-encodes the JSON text into a byte
 *     buffer and decodes it back, as a ring or socket would need.
 *
 * One op = set every field (kind, key, partition, sender, correlationId,
 * messageType, schemaVersion, flags, replyTo, 30-byte payload), encode, then
 * decode and read kind, key, sender, payload and the scalars. Keys rotate
 * over 64 values and the correlation id changes per op, the same in every
 * row. Each tinybench sample runs OPS ops (see lib/micro.ts).
 */

import { Buffer } from 'node:buffer'
import { Builder, ByteBuffer } from 'flatbuffers'
import { EnvelopeReader, EnvelopeWriter, FLAGS, InternedString } from '../src/wire/envelope.js'
import { Envelope } from '../src/wire/generated/graincluster/wire/envelope.js'
import { binaryCodec } from '../src/wire/payload-codec.js'
import { blackhole, FULL_TIMING, QUICK_TIMING, runMicro, type MicroCase } from './lib/micro.js'
import { speedup, type BenchOptions, type ScopeResult } from './lib/report.js'

const OPS = 256

const KIND = 'bench-counter'
const KEYS = Array.from({ length: 64 }, (_, i) => `user-${String(100_000 + i * 7919)}`)
const SENDER = 'grain://node-1/caller/user-7'
const PARTITION = 17
const MESSAGE_TYPE = 0x1234abcd
const SCHEMA_VERSION = 1
const REPLY_TO = 0
const PAYLOAD = (() => {
  const buf = new Uint8Array(256)
  const n = binaryCodec.encodeInto({ id: 7, name: 'widget', n: 3 }, buf, 0, buf.length)
  return buf.slice(0, n)
})()

interface Decoded {
  kind: string
  key: string
  sender: string
  partition: number
  correlationId: number
  messageType: number
  schemaVersion: number
  flags: number
  replyTo: number
  payload: Uint8Array
}

// --------------------------------------------------------- hand-written path

const kindBytes = new InternedString(KIND)
const writer = new EnvelopeWriter()
const reader = new EnvelopeReader()
const frame = new Uint8Array(4096)

function handEncode(i: number): number {
  const w = writer.reset()
  w.kind = kindBytes
  w.key = KEYS[i & 63]!
  w.sender = SENDER
  w.partition = PARTITION
  w.correlationId = i
  w.messageType = MESSAGE_TYPE
  w.schemaVersion = SCHEMA_VERSION
  w.flags = FLAGS.ASK
  w.replyTo = REPLY_TO
  w.payloadBytes = PAYLOAD
  return w.writeInto(frame, 0, frame.length)
}

function handDecode(n: number): Decoded {
  const r = reader.reset(frame, 0, n)
  return {
    kind: r.kind(),
    key: r.key(),
    sender: r.sender(),
    partition: r.partition,
    correlationId: r.correlationId,
    messageType: r.messageType,
    schemaVersion: r.schemaVersion,
    flags: r.flags,
    replyTo: r.replyTo,
    payload: r.payload(),
  }
}

function handOps(): void {
  for (let i = 0; i < OPS; i++) {
    const n = handEncode(i)
    const r = reader.reset(frame, 0, n)
    blackhole(r.kind().length + r.key().length + r.sender().length + r.payload().length + r.partition + r.correlationId + r.messageType + r.schemaVersion + r.flags + r.replyTo)
  }
}

// ------------------------------------------------------- flatbuffers Builder

const builder = new Builder(1024)
const fbKind = new TextEncoder().encode(KIND) // pre-encoded, like InternedString
const fbEnvelope = new Envelope()

function fbEncode(i: number): Uint8Array {
  const b = builder
  b.clear()
  const kind = b.createString(fbKind)
  const key = b.createString(KEYS[i & 63])
  const sender = b.createString(SENDER)
  const payload = Envelope.createPayloadVector(b, PAYLOAD)
  Envelope.startEnvelope(b)
  Envelope.addKind(b, kind)
  Envelope.addKey(b, key)
  Envelope.addPartition(b, PARTITION)
  Envelope.addSender(b, sender)
  Envelope.addCorrelationId(b, i)
  Envelope.addMessageType(b, MESSAGE_TYPE)
  Envelope.addSchemaVersion(b, SCHEMA_VERSION)
  Envelope.addFlags(b, FLAGS.ASK)
  Envelope.addPayload(b, payload)
  Envelope.addReplyTo(b, REPLY_TO)
  Envelope.finishEnvelopeBuffer(b, Envelope.endEnvelope(b))
  return b.asUint8Array()
}

function fbRead(bytes: Uint8Array): Envelope {
  return Envelope.getRootAsEnvelope(new ByteBuffer(bytes), fbEnvelope)
}

function fbDecode(bytes: Uint8Array): Decoded {
  const e = fbRead(bytes)
  return {
    kind: e.kind() ?? '',
    key: e.key() ?? '',
    sender: e.sender() ?? '',
    partition: e.partition(),
    correlationId: e.correlationId(),
    messageType: e.messageType(),
    schemaVersion: e.schemaVersion(),
    flags: e.flags(),
    replyTo: e.replyTo(),
    payload: e.payloadArray() ?? new Uint8Array(0),
  }
}

function fbOps(): void {
  for (let i = 0; i < OPS; i++) {
    const e = fbRead(fbEncode(i))
    blackhole(
      (e.kind()?.length ?? 0) + (e.key()?.length ?? 0) + (e.sender()?.length ?? 0) + (e.payloadArray()?.length ?? 0) +
        e.partition() + e.correlationId() + e.messageType() + e.schemaVersion() + e.flags() + e.replyTo(),
    )
  }
}

// ------------------------------------------------------------------- JSON

interface JsonEnvelope {
  kind: string
  key: string
  partition: number
  sender: string
  correlationId: number
  messageType: number
  schemaVersion: number
  flags: number
  replyTo: number
  payload: string
}

const payloadBuffer = Buffer.from(PAYLOAD.buffer, PAYLOAD.byteOffset, PAYLOAD.byteLength)

function jsonEncode(i: number): string {
  return JSON.stringify({
    kind: KIND,
    key: KEYS[i & 63]!,
    partition: PARTITION,
    sender: SENDER,
    correlationId: i,
    messageType: MESSAGE_TYPE,
    schemaVersion: SCHEMA_VERSION,
    flags: FLAGS.ASK,
    replyTo: REPLY_TO,
    payload: payloadBuffer.toString('base64'),
  } satisfies JsonEnvelope)
}

function jsonDecode(text: string): Decoded {
  const o = JSON.parse(text) as JsonEnvelope
  return { ...o, payload: Buffer.from(o.payload, 'base64') }
}

function jsonOps(): void {
  for (let i = 0; i < OPS; i++) {
    const o = JSON.parse(jsonEncode(i)) as JsonEnvelope
    const payload = Buffer.from(o.payload, 'base64')
    blackhole(o.kind.length + o.key.length + o.sender.length + payload.length + o.partition + o.correlationId + o.messageType + o.schemaVersion + o.flags + o.replyTo)
  }
}

const utf8Encoder = new TextEncoder()
const utf8Decoder = new TextDecoder()

function jsonBytesEncode(i: number): number {
  return utf8Encoder.encodeInto(jsonEncode(i), frame).written
}

function jsonBytesOps(): void {
  for (let i = 0; i < OPS; i++) {
    const n = jsonBytesEncode(i)
    const o = JSON.parse(utf8Decoder.decode(frame.subarray(0, n))) as JsonEnvelope
    const payload = Buffer.from(o.payload, 'base64')
    blackhole(o.kind.length + o.key.length + o.sender.length + payload.length + o.partition + o.correlationId + o.messageType + o.schemaVersion + o.flags + o.replyTo)
  }
}

// -------------------------------------------------------------- checking

function expected(i: number): Decoded {
  return {
    kind: KIND,
    key: KEYS[i & 63]!,
    sender: SENDER,
    partition: PARTITION,
    correlationId: i,
    messageType: MESSAGE_TYPE,
    schemaVersion: SCHEMA_VERSION,
    flags: FLAGS.ASK,
    replyTo: REPLY_TO,
    payload: PAYLOAD,
  }
}

const FIELDS = ['kind', 'key', 'sender', 'partition', 'correlationId', 'messageType', 'schemaVersion', 'flags', 'replyTo'] as const

function sameDecoded(a: Decoded, b: Decoded): boolean {
  return FIELDS.every((f) => a[f] === b[f]) && Buffer.compare(a.payload, b.payload) === 0
}

/** Every path must round-trip every field before it is timed. */
function verify(): Record<string, number> {
  const sizes: Record<string, number> = {}
  for (const i of [0, 1, 63, 123_456]) {
    const want = expected(i)
    const n = handEncode(i)
    const paths: [string, Decoded, number][] = [
      ['envelope', handDecode(n), n],
      ['flatbuffers', fbDecode(fbEncode(i)), fbEncode(i).length],
      ['json', jsonDecode(jsonEncode(i)), Buffer.byteLength(jsonEncode(i))],
    ]
    // The generated reader must also read the hand-written bytes.
    paths.push(['envelope via generated reader', fbDecode(frame.slice(0, n)), n])
    for (const [name, got, size] of paths) {
      if (!sameDecoded(got, want)) throw new Error(`envelope bench: ${name} did not round-trip message ${i}: ${JSON.stringify({ ...got, payload: [...got.payload] })}`)
      sizes[name] = size
    }
  }
  return sizes
}

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const sizes = verify()
  const cases: MicroCase[] = [
    { name: 'JSON.stringify + JSON.parse, base64 payload', opsPerCall: OPS, fn: jsonOps },
    { name: 'JSON + UTF-8 to/from a byte buffer', opsPerCall: OPS, fn: jsonBytesOps },
    { name: 'flatbuffers Builder + generated reader', opsPerCall: OPS, fn: fbOps },
    { name: 'EnvelopeWriter.writeInto + EnvelopeReader.reset', opsPerCall: OPS, fn: handOps },
  ]
  const bytesOf = [sizes.json, sizes.json, sizes.flatbuffers, sizes.envelope]
  o.log(`envelope: ${cases.length} cases, ${(o.quick ? QUICK_TIMING : FULL_TIMING).timeMs} ms each`)
  const res = await runMicro(cases, o.quick ? QUICK_TIMING : FULL_TIMING)
  const base = res[0]!.opsPerSec
  const rows = res.map((r, i) => ({
    case: r.name + (i === 0 ? ' [baseline]' : ''),
    'encoded bytes': bytesOf[i] ?? null,
    'ops/s': r.opsPerSec,
    'ns/op': r.nsPerOp,
    'p50 ns/op': r.p50NsPerOp,
    'p99 ns/op': r.p99NsPerOp,
    'rme %': r.rmePct,
    samples: r.samples,
    'speedup vs baseline': speedup(r.opsPerSec, base),
  }))
  return {
    scope: 'envelope',
    title: 'envelope encode + decode (one op = write all fields, read them back)',
    method: `tinybench (hrtime), ${OPS} ops per sample; ops/s = ${OPS} / mean sample time`,
    baseline: cases[0]!.name,
    params: { opsPerSample: OPS, payloadBytes: PAYLOAD.length, keys: KEYS.length },
    rows,
    targets: [],
    notes: [
      'Every path is checked to round-trip all fields before timing; the generated flatbuffers reader also reads the hand-written bytes.',
      'JSON baseline: a fresh object literal per op, payload bytes as base64 (Buffer), the usual way to put bytes in JSON; the second JSON row adds the UTF-8 encode/decode a byte transport needs.',
      'flatbuffers: one Builder reused with clear(), kind pre-encoded (as InternedString), payload via the generated createPayloadVector, reader object reused.',
    ],
    startedAt,
    durationMs: performance.now() - t0,
  }
}
