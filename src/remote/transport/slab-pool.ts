/**
 * Outbound slabs. Small frames are packed into fixed-size slabs that go to
 * the socket as views; a slab whose writes have all completed is reused
 * instead of dropped. A fresh Buffer per slab is an external allocation V8
 * accounts for: under a steady stream of remote tells (~1,750 slabs of
 * 64 KiB per million tells) that started a full mark-compact on the sender
 * every ~100 ms, 2–12 ms each.
 *
 * A slab may be reused once it is retired (frames are packed into another
 * one now) and no view of it is still queued or being written. Writes
 * complete in order and their callbacks run after the bytes left for the
 * kernel, so by then nothing reads the slab any more.
 */

export class Slab {
  /** Views of this slab queued for a write or being written (OutboundQueue holds one per chunk). */
  writes = 0
  /** Frames are packed into another slab now. */
  retired = false
  constructor(readonly buf: Buffer) {}
}

export class SlabPool {
  readonly #spare: Slab[] = []
  /** Slabs created (Buffer allocations). */
  allocated = 0
  /** Slabs handed out again from the spares. */
  reused = 0

  constructor(
    readonly slabBytes: number,
    /** Spare slabs kept for reuse, transport-wide; beyond that they are left to the GC. */
    readonly maxSpare: number,
  ) {}

  /** A slab of at least `need` bytes: a spare one when it fits, else a new one. */
  take(need: number): Slab {
    if (need <= this.slabBytes) {
      const s = this.#spare.pop()
      if (s !== undefined) {
        s.retired = false
        this.reused++
        return s
      }
    }
    this.allocated++
    return new Slab(Buffer.allocUnsafe(Math.max(this.slabBytes, need)))
  }

  /** A socket write holding a view of `s` starts. */
  hold(s: Slab): void {
    s.writes++
  }

  /** A socket write holding a view of `s` completed (or failed), or its queued view was dropped. */
  release(s: Slab): void {
    s.writes--
    this.#recycle(s)
  }

  /** Frames are packed into another slab now: `s` is reusable once nothing holds it. */
  retire(s: Slab): void {
    s.retired = true
    this.#recycle(s)
  }

  #recycle(s: Slab): void {
    if (s.writes === 0 && s.retired && s.buf.length === this.slabBytes && this.#spare.length < this.maxSpare) this.#spare.push(s)
  }

  /** Spare slabs now (for tests). */
  get spare(): number {
    return this.#spare.length
  }
}
