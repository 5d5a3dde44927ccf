/**
 * The raw node:net baseline of the remote scope: the same `[u32 LE length]
 * [body]` framing as the node transport, with nothing on top (no handshake,
 * no envelope decoding, no grains). The receiving side runs in the peer
 * process (peer.ts), next to the GrainNode under test; the sending side in
 * the bench process (remote.bench.ts).
 *
 * Body types (first byte):
 *   0x02 DATA   counted and skipped (the bench sends copies of real tell frames, which start with 0x02)
 *   0x10 SYNC   answered with [0x11][u32 LE DATA frames counted on this connection so far]
 *   0x12 ECHO   [0x12][u32 LE reply body length][padding]: answered with a body of that length starting 0x13
 */

import type { Socket } from 'node:net'

export const RAW_DATA = 0x02
export const RAW_SYNC = 0x10
export const RAW_SYNC_REPLY = 0x11
export const RAW_ECHO = 0x12
export const RAW_ECHO_REPLY = 0x13
export const RAW_HEADER_BYTES = 4

/** Called once per complete frame: body = buf[off, off + len). Valid only during the call. */
export type RawFrameHandler = (buf: Buffer, off: number, len: number) => void

/**
 * Incremental length-prefix parser. Frames inside one chunk are handed over
 * in place; only a frame split across chunks is copied (once).
 */
export class RawFrameParser {
  readonly #hdr = Buffer.alloc(RAW_HEADER_BYTES)
  #hdrFill = 0
  #body: Buffer | null = null
  #bodyFill = 0

  push(chunk: Buffer, onFrame: RawFrameHandler): void {
    const n = chunk.length
    let p = 0
    if (this.#hdrFill > 0) {
      // Finish the frame split across the previous chunk(s).
      if (this.#body === null) {
        const take = Math.min(RAW_HEADER_BYTES - this.#hdrFill, n)
        chunk.copy(this.#hdr, this.#hdrFill, 0, take)
        this.#hdrFill += take
        p = take
        if (this.#hdrFill < RAW_HEADER_BYTES) return
        this.#body = Buffer.allocUnsafe(this.#hdr.readUInt32LE(0))
        this.#bodyFill = 0
      }
      const body = this.#body
      const take = Math.min(body.length - this.#bodyFill, n - p)
      chunk.copy(body, this.#bodyFill, p, p + take)
      this.#bodyFill += take
      p += take
      if (this.#bodyFill < body.length) return
      this.#body = null
      this.#hdrFill = 0
      onFrame(body, 0, body.length)
    }
    while (n - p >= RAW_HEADER_BYTES) {
      const len = chunk.readUInt32LE(p)
      if (n - p - RAW_HEADER_BYTES < len) break
      onFrame(chunk, p + RAW_HEADER_BYTES, len)
      p += RAW_HEADER_BYTES + len
    }
    if (p < n) {
      // A frame starts here and ends in a later chunk.
      const rest = n - p
      if (rest < RAW_HEADER_BYTES) {
        chunk.copy(this.#hdr, 0, p, n)
        this.#hdrFill = rest
      } else {
        chunk.copy(this.#hdr, 0, p, p + RAW_HEADER_BYTES)
        this.#hdrFill = RAW_HEADER_BYTES
        this.#body = Buffer.allocUnsafe(chunk.readUInt32LE(p))
        chunk.copy(this.#body, 0, p + RAW_HEADER_BYTES, n)
        this.#bodyFill = rest - RAW_HEADER_BYTES
      }
    }
  }
}

/** One length-prefixed frame in a fresh buffer. */
export function rawFrame(body: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(RAW_HEADER_BYTES + body.length)
  b.writeUInt32LE(body.length, 0)
  b.set(body, RAW_HEADER_BYTES)
  return b
}

/** Receiver side (peer process): counts DATA frames, answers SYNC and ECHO. */
export function serveRawConnection(socket: Socket): void {
  socket.setNoDelay(true)
  const parser = new RawFrameParser()
  let frames = 0
  const onFrame: RawFrameHandler = (buf, off, len) => {
    if (len === 0) return
    const type = buf[off]
    if (type === RAW_DATA) frames++
    else if (type === RAW_SYNC) {
      const reply = Buffer.allocUnsafe(RAW_HEADER_BYTES + 5)
      reply.writeUInt32LE(5, 0)
      reply[RAW_HEADER_BYTES] = RAW_SYNC_REPLY
      reply.writeUInt32LE(frames >>> 0, RAW_HEADER_BYTES + 1)
      socket.write(reply)
    } else if (type === RAW_ECHO && len >= 5) {
      const replyLen = buf.readUInt32LE(off + 1)
      const reply = Buffer.alloc(RAW_HEADER_BYTES + replyLen)
      reply.writeUInt32LE(replyLen, 0)
      if (replyLen > 0) reply[RAW_HEADER_BYTES] = RAW_ECHO_REPLY
      socket.write(reply)
    }
  }
  socket.on('data', (chunk: Buffer) => parser.push(chunk, onFrame))
  socket.on('error', () => socket.destroy())
}
