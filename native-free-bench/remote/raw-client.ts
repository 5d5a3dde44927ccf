/**
 * Sending side of the raw node:net baseline (see raw-frames.ts): one
 * loopback socket to the peer process, 64 KiB batched writes with 'drain'
 * backpressure, and sequential request/response for SYNC and ECHO.
 */

import { connect, type Socket } from 'node:net'
import { RAW_SYNC, RawFrameParser, rawFrame } from './raw-frames.js'

export interface RawReply {
  /** First body byte. */
  type: number
  /** Body length. */
  len: number
  /** u32 LE after the type byte (0 if the body is shorter than 5 bytes). */
  value: number
}

export class RawClient {
  readonly #socket: Socket
  readonly #parser = new RawFrameParser()
  #waiter: { resolve: (r: RawReply) => void; reject: (e: Error) => void } | undefined
  #failure: Error | undefined
  static readonly #syncFrame = rawFrame(Uint8Array.of(RAW_SYNC))

  private constructor(socket: Socket) {
    this.#socket = socket
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) =>
      this.#parser.push(chunk, (buf, off, len) => {
        const w = this.#waiter
        this.#waiter = undefined
        w?.resolve({ type: len > 0 ? buf[off]! : -1, len, value: len >= 5 ? buf.readUInt32LE(off + 1) : 0 })
      }),
    )
    const fail = (e: Error): void => {
      this.#failure ??= e
      const w = this.#waiter
      this.#waiter = undefined
      w?.reject(e)
    }
    socket.on('error', fail)
    socket.on('close', () => fail(new Error('raw baseline socket closed')))
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port })
      s.once('error', reject)
      s.once('connect', () => {
        s.off('error', reject)
        resolve(new RawClient(s))
      })
    })
  }

  /** socket.write: false means wait for drained(). */
  write(chunk: Uint8Array): boolean {
    if (this.#failure !== undefined) throw this.#failure
    return this.#socket.write(chunk)
  }

  drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#failure !== undefined) return reject(this.#failure)
      const onDrain = (): void => {
        this.#socket.off('close', onClose)
        resolve()
      }
      const onClose = (): void => {
        this.#socket.off('drain', onDrain)
        reject(this.#failure ?? new Error('raw baseline socket closed'))
      }
      this.#socket.once('drain', onDrain)
      this.#socket.once('close', onClose)
    })
  }

  /** Write one prebuilt frame and wait for the next frame back (one request at a time). */
  request(frame: Uint8Array): Promise<RawReply> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure)
    if (this.#waiter !== undefined) return Promise.reject(new Error('raw baseline: one request at a time'))
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject }
      this.#socket.write(frame)
    })
  }

  /** DATA frames the peer has counted on this connection (every frame written before is included: TCP keeps order). */
  sync(): Promise<RawReply> {
    return this.request(RawClient.#syncFrame)
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#socket.destroyed) return resolve()
      this.#socket.once('close', () => resolve())
      this.#socket.destroy()
    })
  }
}
