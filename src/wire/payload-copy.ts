/**
 * A PayloadWriter that copies an already-encoded payload: a tell taken out
 * of a worker's run (wire/tell-run.ts) and appended to another run, a ring's
 * or a tell batch's, without decoding it.
 */

import type { PayloadWriter } from './envelope.js'

/** Up to this many bytes the copy goes byte by byte. */
const SMALL_COPY_BYTES = 64
const EMPTY = new Uint8Array(0)

export class PayloadCopy {
  #src: Uint8Array = EMPTY
  #off = 0
  #len = 0

  /** Copy src[off, off + len) at the next write. The bytes must stay valid until then (then call clear()). */
  from(src: Uint8Array, off: number, len: number): this {
    this.#src = src
    this.#off = off
    this.#len = len
    return this
  }

  /** Drop the reference to the source (it may be ring memory that is about to be reused). */
  clear(): void {
    this.#src = EMPTY
  }

  readonly write: PayloadWriter = (out, at, max) => {
    const n = this.#len
    if (n > max) return -1
    const src = this.#src
    const from = this.#off
    // Tell payloads are mostly a few bytes: a loop beats a view plus set() (an allocation and a native call each).
    if (n <= SMALL_COPY_BYTES) for (let i = 0; i < n; i++) out[at + i] = src[from + i]!
    else out.set(src.subarray(from, from + n), at)
    return n
  }
}
