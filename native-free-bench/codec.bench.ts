/**
 * codec scope (tinybench, one thread): payload codecs on three payloads.
 *
 * One op = encode the value into a byte buffer, then decode it back:
 *   - binaryCodec / jsonCodec: encodeInto(value, buf) + decode(buf) — the
 *     runtime's PayloadCodec interface, which writes straight into ring memory
 *   - msgpackr (pure JS, standard MessagePack: useRecords false): Packr.pack
 *     (a view of its own buffer), copied into the same destination buffer as
 *     a ring producer would have to, then Unpackr.unpack
 *
 * msgpackr is imported from 'msgpackr/pack' and 'msgpackr/unpack' and
 * MSGPACKR_NATIVE_ACCELERATION_DISABLED is set by run.ts before this module
 * loads, so its optional native addon is never loaded (checked below).
 * Baseline: jsonCodec. Each sample runs OPS ops (see lib/micro.ts).
 */

import { createRequire } from 'node:module'
import { isDeepStrictEqual } from 'node:util'
import { Packr } from 'msgpackr/pack'
import * as msgpackrUnpack from 'msgpackr/unpack'
import { binaryCodec, jsonCodec, type PayloadCodec } from '../src/wire/payload-codec.js'
import { blackhole, FULL_TIMING, QUICK_TIMING, runMicro, type MicroCase } from './lib/micro.js'
import { speedup, type BenchOptions, type Row, type ScopeResult } from './lib/report.js'

interface Payload {
  name: string
  value: unknown
  /** Ops per tinybench sample (fewer for the large payload). */
  ops: number
}

function largePayload(): unknown {
  return {
    id: 'order-2024-000917',
    customer: { id: 48213, name: 'Ada Lovelace', email: 'ada@example.com', vip: true },
    currency: 'EUR',
    createdAt: 1_717_000_000_000,
    items: Array.from({ length: 10 }, (_, i) => ({
      sku: `SKU-${10_000 + i * 37}`,
      title: `Widget model ${i}`,
      qty: 1 + (i % 4),
      price: 9.99 + i * 2.5,
      tags: ['blue', i % 2 === 0 ? 'sale' : 'new'],
    })),
    shipping: { street: '12 Analytical Engine Way', city: 'London', zip: 'NW1 2DB', express: false },
    notes: null,
  }
}

const PAYLOADS: Payload[] = [
  { name: 'small number (42)', value: 42, ops: 512 },
  { name: 'small object {id,name,tags[3],n}', value: { id: 12_345, name: 'widget-7', tags: ['a', 'blue', 'large'], n: 3.5 }, ops: 256 },
  { name: '~1 KB object, nested array', value: largePayload(), ops: 32 },
]

interface Codec {
  name: string
  /** Encode into buf[0..); returns the length. */
  encode(v: unknown, buf: Uint8Array): number
  decode(buf: Uint8Array, n: number): unknown
}

function runtimeCodec(c: PayloadCodec): Codec {
  return {
    name: `${c.name}Codec`,
    encode: (v, buf) => {
      const n = c.encodeInto(v, buf, 0, buf.length)
      if (n < 0) throw new Error(`${c.name}: payload does not fit`)
      return n
    },
    decode: (buf, n) => c.decode(buf, 0, n),
  }
}

function msgpackrCodec(): Codec {
  const packr = new Packr({ useRecords: false })
  const unpackr = new msgpackrUnpack.Unpackr({ useRecords: false })
  return {
    name: 'msgpackr (pure JS)',
    encode: (v, buf) => {
      const bytes = packr.pack(v)
      buf.set(bytes, 0)
      return bytes.length
    },
    decode: (buf, n) => unpackr.unpack(buf.subarray(0, n)),
  }
}

const CODECS: Codec[] = [runtimeCodec(jsonCodec), runtimeCodec(binaryCodec), msgpackrCodec()]
const BASELINE = 0 // jsonCodec

function roundTrips(c: Codec, v: unknown, buf: Uint8Array, ops: number): () => void {
  return () => {
    for (let i = 0; i < ops; i++) {
      const n = c.encode(v, buf)
      const out = c.decode(buf, n)
      blackhole(n + (out === undefined ? 0 : 1))
    }
  }
}

/** The comparison is pure JS against pure JS: fail if msgpackr's native addon got in. */
function assertPureJsMsgpackr(): void {
  // Exported by msgpackr/unpack but missing from its typings.
  const native = (msgpackrUnpack as { isNativeAccelerationEnabled?: unknown }).isNativeAccelerationEnabled
  const addon = Object.keys(createRequire(import.meta.url).cache).find((p) => p.includes('msgpackr-extract'))
  if (native === true || addon !== undefined) throw new Error(`codec bench: msgpackr native acceleration is loaded (${addon ?? 'isNativeAccelerationEnabled'}); it must run pure JS`)
}

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  assertPureJsMsgpackr()
  const buf = new Uint8Array(64 * 1024)
  const cases: MicroCase[] = []
  const meta: { payload: Payload; codec: Codec; bytes: number }[] = []
  for (const p of PAYLOADS) {
    for (const c of CODECS) {
      const n = c.encode(p.value, buf)
      const back = c.decode(buf, n)
      if (!isDeepStrictEqual(back, p.value)) throw new Error(`codec bench: ${c.name} did not round-trip ${p.name}: ${JSON.stringify(back)}`)
      cases.push({ name: `${p.name} / ${c.name}`, opsPerCall: p.ops, fn: roundTrips(c, p.value, buf, p.ops) })
      meta.push({ payload: p, codec: c, bytes: n })
    }
  }
  o.log(`codec: ${cases.length} cases, ${(o.quick ? QUICK_TIMING : FULL_TIMING).timeMs} ms each`)
  const res = await runMicro(cases, o.quick ? QUICK_TIMING : FULL_TIMING)

  const rows: Row[] = []
  const fastest: string[] = []
  for (let pi = 0; pi < PAYLOADS.length; pi++) {
    const group = res.slice(pi * CODECS.length, (pi + 1) * CODECS.length)
    const base = group[BASELINE]!.opsPerSec
    const best = group.reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a))
    fastest.push(`${PAYLOADS[pi]!.name}: ${CODECS[group.indexOf(best)]!.name}`)
    group.forEach((r, ci) => {
      const m = meta[pi * CODECS.length + ci]!
      rows.push({
        payload: m.payload.name,
        codec: m.codec.name + (ci === BASELINE ? ' [baseline]' : ''),
        bytes: m.bytes,
        'ops/s': r.opsPerSec,
        'ns/op': r.nsPerOp,
        'p99 ns/op': r.p99NsPerOp,
        'rme %': r.rmePct,
        'speedup vs baseline': speedup(r.opsPerSec, base),
        fastest: r === best ? 'yes' : '',
      })
    })
  }
  return {
    scope: 'codec',
    title: 'payload codecs: encode into a buffer + decode, per payload',
    method: 'tinybench (hrtime), several ops per sample; ops/s = ops / mean sample time',
    baseline: 'jsonCodec (per payload)',
    params: { payloads: PAYLOADS.length, codecs: CODECS.map((c) => c.name).join(', ') },
    rows,
    targets: [],
    notes: [
      `fastest — ${fastest.join('; ')}`,
      'Every codec is checked to round-trip every payload (deep equality) before timing.',
      'msgpackr: pure JS (msgpackr/pack + msgpackr/unpack, native addon off), useRecords: false = standard MessagePack; its output is copied into the destination buffer because a ring needs the bytes there.',
    ],
    startedAt,
    durationMs: performance.now() - t0,
  }
}
