/**
 * Length-prefixed frames for the node-to-node transport (sans-I/O).
 *
 * Wire form of one frame:
 *
 *    0  u32 little-endian  body length N (0 ≤ N ≤ maxFrameBytes)
 *    4  N bytes            body
 *
 * FrameDecoder reassembles frames from the arbitrary chunks a TCP stream
 * delivers: a header or a body may be split anywhere, and one chunk may hold
 * many frames. A frame that lies entirely inside one chunk is handed over as
 * a zero-copy `subarray` of that chunk (it keeps the chunk alive while it is
 * referenced); only a body that spans chunks is copied, once, into a buffer
 * of exactly its size. The size limit is checked as soon as the 4 header
 * bytes are known, before anything of the body is buffered, so a peer cannot
 * make the decoder allocate more than `maxFrameBytes`.
 */

import { GrainClusterError } from '../../common/errors.js'
import { putU32le } from '../../wire/le.js'

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4
/** Default limit on one frame's body: 4 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
/** The largest body the u32 prefix can describe. */
export const MAX_ENCODABLE_FRAME_BYTES = 0xffff_ffff

/** Called once per complete frame, in stream order. */
export type FrameHandler = (frame: Uint8Array) => void

/** Options of FrameDecoder. */
export interface FrameDecoderOptions {
  /** Largest accepted body in bytes; mutable later through `maxFrameBytes`. */
  maxFrameBytes: number
}

/** The partial frame held between chunks, if any. */
export interface PartialFrame {
  /** Bytes of this frame (header included) received so far. */
  received: number
  /** Total bytes of the frame (header included), or undefined while the header itself is incomplete. */
  expected: number | undefined
}

/** The ERR_FRAME_TOO_LARGE error for a frame of `size` bytes over `limit`. */
export function frameTooLarge(size: number, limit: number): GrainClusterError {
  return new GrainClusterError('ERR_FRAME_TOO_LARGE', `frame of ${size} bytes exceeds the limit of ${limit} bytes`, { size, limit })
}

/**
 * Incremental decoder of `[u32 LE length][body]` frames.
 *
 * `push()` throws ERR_FRAME_TOO_LARGE (details `size`, `limit`) when a header
 * announces a body over the limit; the decoder is then failed and every later
 * `push()` rethrows the same error. If the frame handler throws, the rest of
 * that chunk cannot be resumed, so the decoder fails with the handler's error
 * too. `close()` makes later pushes no-ops (the driver calls it when it stops
 * reading a connection, including from inside the handler).
 */
export class FrameDecoder {
  /**
   * Current limit. The transport raises it from the small pre-handshake
   * limit to the full one once the peer is authenticated; the new value
   * applies from the next header read, even within the same chunk.
   */
  maxFrameBytes: number

  readonly #header = new Uint8Array(FRAME_HEADER_BYTES)
  #headerFill = 0
  /** Body being assembled across chunks, or null between frames. */
  #body: Uint8Array | null = null
  #bodyFill = 0
  #failure: unknown = undefined
  #failed = false
  #closed = false
  /** pause(): frames stop being handed over, even inside a chunk; what is left waits here, in order. */
  #paused = false
  #held: Uint8Array[] = []
  #resuming = false

  constructor(options: FrameDecoderOptions) {
    this.maxFrameBytes = options.maxFrameBytes
  }

  /** True after close() or a failure: the decoder drops everything. */
  get closed(): boolean {
    return this.#closed || this.#failed
  }

  /** The incomplete frame held between chunks, or undefined at a frame boundary. */
  get partial(): PartialFrame | undefined {
    if (this.#body !== null) return { received: FRAME_HEADER_BYTES + this.#bodyFill, expected: FRAME_HEADER_BYTES + this.#body.length }
    if (this.#headerFill > 0) return { received: this.#headerFill, expected: undefined }
    return undefined
  }

  /** Bytes buffered for an incomplete frame (0 at a frame boundary). */
  get bufferedBytes(): number {
    return this.#headerFill + this.#bodyFill
  }

  /** True between pause() and resume(). */
  get paused(): boolean {
    return this.#paused
  }

  /** Bytes received but held back by a pause (not yet decoded). */
  get heldBytes(): number {
    let n = 0
    for (const c of this.#held) n += c.length
    return n
  }

  /**
   * Hand over no more frames until resume(): the rest of the chunk being
   * decoded (pause() may be called from inside onFrame) and later pushes
   * are held, in order. A reader that stops the socket when its consumer
   * is full would otherwise still deliver everything one read returned
   * (up to 64 KiB), however far past the consumer's bound that goes.
   */
  pause(): void {
    this.#paused = true
  }

  /** Decode what a pause held back (and go on taking pushes); stops again if onFrame pauses. */
  resume(onFrame: FrameHandler): void {
    this.#paused = false
    // Called from inside a frame of the resume loop below: that loop goes on.
    if (this.#resuming) return
    this.#resuming = true
    try {
      while (this.#held.length > 0 && !this.#paused && !this.closed) this.push(this.#held.shift()!, onFrame)
    } finally {
      this.#resuming = false
    }
  }

  /** Stop decoding and drop any partial frame; later pushes are ignored. */
  close(): void {
    this.#held = []
    this.#closed = true
    this.#body = null
    this.#bodyFill = 0
    this.#headerFill = 0
  }

  /** Feed one chunk; calls `onFrame` for each frame it completes. */
  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    if (this.#failed) throw this.#failure
    if (this.#closed) return
    if (this.#paused || (this.#held.length > 0 && !this.#resuming)) {
      this.#held.push(chunk)
      return
    }
    try {
      this.#push(chunk, onFrame)
    } catch (e) {
      this.#failed = true
      this.#failure = e
      this.#body = null
      this.#bodyFill = 0
      this.#headerFill = 0
      throw e
    }
  }

  #push(chunk: Uint8Array, onFrame: FrameHandler): void {
    const n = chunk.length
    let p = 0
    while (p < n && !this.#closed) {
      const body = this.#body
      if (body !== null) {
        // Continue a body that spans chunks: the one copy a split frame needs.
        const take = Math.min(body.length - this.#bodyFill, n - p)
        body.set(chunk.subarray(p, p + take), this.#bodyFill)
        this.#bodyFill += take
        p += take
        if (this.#bodyFill === body.length) {
          // Reset before the callback so the decoder is at a boundary if it re-enters or throws.
          this.#body = null
          this.#bodyFill = 0
          onFrame(body)
          if (this.#paused) return this.#hold(chunk, p)
        }
        continue
      }

      let len: number
      if (this.#headerFill === 0 && n - p >= FRAME_HEADER_BYTES) {
        // Fast path: the whole header is in this chunk.
        len = (chunk[p]! | (chunk[p + 1]! << 8) | (chunk[p + 2]! << 16) | (chunk[p + 3]! << 24)) >>> 0
        p += FRAME_HEADER_BYTES
      } else {
        const h = this.#header
        while (this.#headerFill < FRAME_HEADER_BYTES && p < n) h[this.#headerFill++] = chunk[p++]!
        if (this.#headerFill < FRAME_HEADER_BYTES) return
        this.#headerFill = 0
        len = (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0
      }
      // Checked before any of the body is buffered or allocated.
      if (len > this.maxFrameBytes) throw frameTooLarge(len, this.maxFrameBytes)

      if (len <= n - p) {
        // Zero-copy: the body lies inside this chunk. A plain Uint8Array view even when the
        // chunk is a Buffer, whose slice() would not copy: frames keep Uint8Array semantics.
        const frame = new Uint8Array(chunk.buffer, chunk.byteOffset + p, len)
        p += len
        onFrame(frame)
        if (this.#paused) return this.#hold(chunk, p)
      } else {
        this.#body = new Uint8Array(len)
        this.#bodyFill = 0
      }
    }
  }

  /** Keep chunk[p, …) for resume(), ahead of anything held after it. */
  #hold(chunk: Uint8Array, p: number): void {
    if (p < chunk.length) this.#held.unshift(chunk.subarray(p))
  }
}

/** Write the 4-byte length prefix for a body of `length` bytes at buf[off]. */
export function writeFrameHeader(buf: Uint8Array, off: number, length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > MAX_ENCODABLE_FRAME_BYTES) {
    throw new GrainClusterError('ERR_FRAME_TOO_LARGE', `frame length ${length} cannot be encoded in a u32 prefix`, { size: length, limit: MAX_ENCODABLE_FRAME_BYTES })
  }
  putU32le(buf, off, length)
}

/** A fresh `[prefix][body]` buffer (one copy of the body; the transport batches instead). */
export function encodeFrame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + body.length)
  writeFrameHeader(out, 0, body.length)
  out.set(body, FRAME_HEADER_BYTES)
  return out
}
