/**
 * Payload codecs: how a message's value becomes the envelope's payload bytes.
 *
 * The default, `binary`, is a small tagged format written straight into the
 * destination (ring memory) with no intermediate allocation; it carries what
 * JSON does plus undefined, Uint8Array, bigint and Date. `json` is the
 * interoperable alternative. A codec is chosen per node and must be the same
 * on every thread and node (it is named in the worker's start-up data).
 * native-free-bench/envelope.bench.ts measures these against msgpackr.
 */

import { GrainClusterError } from '../common/errors.js'
import { readUtf8, writeUtf8 } from '../common/utf8.js'
import { putU32le } from './le.js'

export interface PayloadCodec {
  readonly name: string
  /**
   * Write `value` into buf[off, off+max). Returns the bytes written, or -1 if
   * it does not fit. Throws ERR_GRAIN_PAYLOAD_ENCODE for unencodable values.
   */
  encodeInto(value: unknown, buf: Uint8Array, off: number, max: number): number
  /** Decode buf[off, off+len). Throws ERR_GRAIN_PAYLOAD_DECODE on bad bytes. */
  decode(buf: Uint8Array, off: number, len: number): unknown
}

const T_UNDEFINED = 0
const T_NULL = 1
const T_FALSE = 2
const T_TRUE = 3
const T_UINT8 = 4
const T_INT32 = 5
const T_FLOAT64 = 6
const T_STRING = 7
const T_ARRAY = 8
const T_OBJECT = 9
const T_BYTES = 10
const T_BIGINT = 11
const T_DATE = 12

const MAX_DEPTH = 64
const f64 = new Float64Array(1)
const f64b = new Uint8Array(f64.buffer)

function encodeError(reason: string): GrainClusterError {
  return new GrainClusterError('ERR_GRAIN_PAYLOAD_ENCODE', reason)
}
function decodeError(reason: string): GrainClusterError {
  return new GrainClusterError('ERR_GRAIN_PAYLOAD_DECODE', reason)
}

/** Returns the new write position, or -1 when out of room. */
function put(v: unknown, b: Uint8Array, p: number, end: number, depth: number): number {
  if (p >= end) return -1
  switch (typeof v) {
    case 'number': {
      if ((v | 0) === v && !Object.is(v, -0)) {
        if (v >= 0 && v < 256) {
          if (p + 2 > end) return -1
          b[p] = T_UINT8
          b[p + 1] = v
          return p + 2
        }
        if (p + 5 > end) return -1
        b[p] = T_INT32
        putU32le(b, p + 1, v)
        return p + 5
      }
      if (p + 9 > end) return -1
      b[p] = T_FLOAT64
      f64[0] = v
      b.set(f64b, p + 1)
      return p + 9
    }
    case 'string':
      return putString(T_STRING, v, b, p, end)
    case 'boolean':
      b[p] = v ? T_TRUE : T_FALSE
      return p + 1
    case 'undefined':
      b[p] = T_UNDEFINED
      return p + 1
    case 'bigint':
      return putString(T_BIGINT, v.toString(), b, p, end)
    case 'object': {
      if (v === null) {
        b[p] = T_NULL
        return p + 1
      }
      if (depth >= MAX_DEPTH) throw encodeError(`value nests deeper than ${MAX_DEPTH} levels (cycle?)`)
      if (Array.isArray(v)) {
        if (p + 5 > end) return -1
        b[p] = T_ARRAY
        putU32le(b, p + 1, v.length)
        p += 5
        for (let i = 0; i < v.length; i++) {
          p = put(v[i], b, p, end, depth + 1)
          if (p < 0) return -1
        }
        return p
      }
      if (v instanceof Uint8Array) {
        if (p + 5 + v.length > end) return -1
        b[p] = T_BYTES
        putU32le(b, p + 1, v.length)
        b.set(v, p + 5)
        return p + 5 + v.length
      }
      if (v instanceof Date) {
        if (p + 9 > end) return -1
        b[p] = T_DATE
        f64[0] = v.getTime()
        b.set(f64b, p + 1)
        return p + 9
      }
      const proto = Object.getPrototypeOf(v) as unknown
      if (proto !== Object.prototype && proto !== null) {
        throw encodeError(`cannot encode an instance of ${(v as { constructor?: { name?: string } }).constructor?.name ?? 'unknown class'}; send plain objects`)
      }
      if (p + 5 > end) return -1
      b[p] = T_OBJECT
      const countAt = p + 1
      p += 5
      let count = 0
      for (const k in v) {
        const item = (v as Record<string, unknown>)[k]
        if (typeof item === 'function' || typeof item === 'symbol') continue
        p = putString(T_STRING, k, b, p, end)
        if (p < 0) return -1
        p = put(item, b, p, end, depth + 1)
        if (p < 0) return -1
        count++
      }
      putU32le(b, countAt, count)
      return p
    }
    default:
      throw encodeError(`cannot encode a value of type ${typeof v}`)
  }
}

function putString(tag: number, s: string, b: Uint8Array, p: number, end: number): number {
  if (p + 5 > end) return -1
  const n = writeUtf8(s, b, p + 5, end - p - 5)
  if (n < 0) return -1
  b[p] = tag
  putU32le(b, p + 1, n)
  return p + 5 + n
}

class BinaryReader {
  b: Uint8Array = new Uint8Array(0)
  p = 0
  end = 0

  u32(): number {
    if (this.p + 4 > this.end) throw decodeError('truncated length')
    const b = this.b
    const p = this.p
    this.p = p + 4
    return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0
  }

  str(): string {
    const n = this.u32()
    if (n > this.end - this.p) throw decodeError('string runs past the payload')
    const at = this.p
    this.p += n
    try {
      return readUtf8(this.b, at, n)
    } catch {
      throw decodeError('string is not valid UTF-8')
    }
  }

  f64(): number {
    if (this.p + 8 > this.end) throw decodeError('truncated float64')
    for (let i = 0; i < 8; i++) f64b[i] = this.b[this.p + i]!
    this.p += 8
    return f64[0]!
  }

  value(depth: number): unknown {
    if (this.p >= this.end) throw decodeError('truncated value')
    if (depth > MAX_DEPTH) throw decodeError('value nests too deep')
    const tag = this.b[this.p++]
    switch (tag) {
      case T_UNDEFINED:
        return undefined
      case T_NULL:
        return null
      case T_FALSE:
        return false
      case T_TRUE:
        return true
      case T_UINT8:
        if (this.p >= this.end) throw decodeError('truncated uint8')
        return this.b[this.p++]
      case T_INT32:
        return this.u32() | 0
      case T_FLOAT64:
        return this.f64()
      case T_STRING:
        return this.str()
      case T_BIGINT: {
        const s = this.str()
        try {
          return BigInt(s)
        } catch {
          throw decodeError('invalid bigint text')
        }
      }
      case T_DATE:
        return new Date(this.f64())
      case T_BYTES: {
        const n = this.u32()
        if (n > this.end - this.p) throw decodeError('bytes run past the payload')
        // Copy: the source is ring memory that is reused after this frame.
        const out = this.b.slice(this.p, this.p + n)
        this.p += n
        return out
      }
      case T_ARRAY: {
        const n = this.u32()
        if (n > this.end - this.p) throw decodeError('array count exceeds the payload')
        const out = new Array<unknown>(n)
        for (let i = 0; i < n; i++) out[i] = this.value(depth + 1)
        return out
      }
      case T_OBJECT: {
        const n = this.u32()
        if (n > this.end - this.p) throw decodeError('object count exceeds the payload')
        const out: Record<string, unknown> = {}
        for (let i = 0; i < n; i++) {
          if (this.b[this.p++] !== T_STRING) throw decodeError('object key is not a string')
          const k = this.str()
          const v = this.value(depth + 1)
          if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
          else out[k] = v
        }
        return out
      }
      default:
        throw decodeError(`unknown value tag ${tag}`)
    }
  }
}

const reader = new BinaryReader()
const NO_BYTES = new Uint8Array(0)

export const binaryCodec: PayloadCodec = {
  name: 'binary',
  encodeInto(value, buf, off, max) {
    const p = put(value, buf, off, off + max, 0)
    return p < 0 ? -1 : p - off
  },
  decode(buf, off, len) {
    if (len === 0) return undefined
    reader.b = buf
    reader.p = off
    reader.end = off + len
    const v = reader.value(0)
    if (reader.p !== reader.end) throw decodeError(`${reader.end - reader.p} trailing bytes after the value`)
    reader.b = NO_BYTES // do not pin ring memory
    return v
  },
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true })

export const jsonCodec: PayloadCodec = {
  name: 'json',
  encodeInto(value, buf, off, max) {
    let text: string | undefined
    try {
      text = JSON.stringify(value)
    } catch (e) {
      throw encodeError(`JSON.stringify failed: ${(e as Error).message}`)
    }
    if (text === undefined) return 0 // undefined travels as an empty payload
    if (text.length > max) return -1
    const r = textEncoder.encodeInto(text, buf.subarray(off, off + max))
    return r.read === text.length ? r.written : -1
  },
  decode(buf, off, len) {
    if (len === 0) return undefined
    try {
      return JSON.parse(textDecoder.decode(buf.subarray(off, off + len))) as unknown
    } catch (e) {
      throw decodeError(`invalid JSON payload: ${(e as Error).message}`)
    }
  },
}

const CODECS = new Map<string, PayloadCodec>([
  [binaryCodec.name, binaryCodec],
  [jsonCodec.name, jsonCodec],
])

export const DEFAULT_CODEC = 'binary'

export function codecByName(name: string): PayloadCodec {
  const c = CODECS.get(name)
  if (c === undefined) {
    throw new GrainClusterError('ERR_CONFIG_INVALID', `unknown payload codec "${name}" (known: ${[...CODECS.keys()].join(', ')})`, {
      issues: [`codec must be one of ${[...CODECS.keys()].join(', ')} (got ${name})`],
    })
  }
  return c
}

/** Encode to a fresh exact-size buffer (slow path: errors, control messages). */
export function encodeToBytes(codec: PayloadCodec, value: unknown, maxBytes = 64 << 20): Uint8Array {
  for (let room = 256; ; room *= 2) {
    const buf = new Uint8Array(Math.min(room, maxBytes))
    const n = codec.encodeInto(value, buf, 0, buf.length)
    if (n >= 0) return buf.slice(0, n)
    if (room >= maxBytes) {
      throw new GrainClusterError('ERR_GRAIN_PAYLOAD_TOO_LARGE', `payload exceeds ${maxBytes} bytes`, { limit: maxBytes })
    }
  }
}
