/**
 * Batch frame: several already-encoded envelopes carried together (the
 * node-to-node transport batches writes). Envelope bytes are copied in as
 * byte vectors, never re-encoded; the reader hands back zero-copy views after
 * checking every offset and length.
 */
import { Builder } from 'flatbuffers'
import { Batch } from './generated/graincluster/wire/batch.js'
import { Frame } from './generated/graincluster/wire/frame.js'
import { GrainClusterError } from '../common/errors.js'
import { u16le, u32le } from './le.js'

export function encodeBatch(envelopes: readonly Uint8Array[]): Uint8Array {
  let total = 64
  for (const e of envelopes) total += e.length + 24
  const b = new Builder(total)
  const frames: number[] = new Array<number>(envelopes.length)
  for (let i = envelopes.length - 1; i >= 0; i--) {
    const vec = Frame.createEnvelopeVector(b, envelopes[i]!)
    frames[i] = Frame.createFrame(b, vec)
  }
  const fv = Batch.createFramesVector(b, frames)
  b.finish(Batch.createBatch(b, fv))
  return b.asUint8Array()
}

function bad(reason: string): GrainClusterError {
  return new GrainClusterError('ERR_FRAME_MALFORMED', `malformed batch: ${reason}`)
}

/** Resolve field `id` of the table at `t`; returns the absolute slot or -1. */
function fieldSlot(buf: Uint8Array, t: number, id: number): number {
  if (t < 0 || t + 4 > buf.length) throw bad('table out of range')
  const vt = t - (u32le(buf, t) | 0)
  if (vt < 0 || vt + 4 > buf.length) throw bad('vtable out of range')
  const vtSize = u16le(buf, vt)
  const tblSize = u16le(buf, vt + 2)
  if (vtSize < 4 || vt + vtSize > buf.length || t + tblSize > buf.length) throw bad('vtable size out of range')
  if (4 + 2 * id + 2 > vtSize) return -1
  const fo = u16le(buf, vt + 4 + 2 * id)
  if (fo === 0) return -1
  if (fo + 4 > tblSize) throw bad('field outside its table')
  return t + fo
}

function vectorAt(buf: Uint8Array, slot: number, elemBytes: number): { at: number; n: number } {
  const at = slot + u32le(buf, slot)
  if (at + 4 > buf.length || at < slot) throw bad('vector offset out of range')
  const n = u32le(buf, at)
  if (n * elemBytes > buf.length - at - 4) throw bad('vector runs past the end')
  return { at: at + 4, n }
}

/** Zero-copy views of the envelopes in a batch, in order. */
export function decodeBatch(buf: Uint8Array): Uint8Array[] {
  if (buf.length < 8) throw bad('shorter than a header')
  const root = u32le(buf, 0)
  const s = fieldSlot(buf, root, 0)
  if (s < 0) return []
  const frames = vectorAt(buf, s, 4)
  const out: Uint8Array[] = []
  for (let i = 0; i < frames.n; i++) {
    const p = frames.at + 4 * i
    const ft = p + u32le(buf, p)
    const es = fieldSlot(buf, ft, 0)
    if (es < 0) throw bad(`frame ${i} has no envelope`)
    const v = vectorAt(buf, es, 1)
    out.push(buf.subarray(v.at, v.at + v.n))
  }
  return out
}
