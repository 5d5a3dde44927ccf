import { type GrainClusterError, toGrainClusterError } from '../common/errors.js'
import { type EnvelopeReader, FLAGS } from './envelope.js'
import { decodeErrorPayload } from './error-frame.js'
import type { PayloadCodec } from './payload-codec.js'

/** A caller waiting for a reply (main thread or a grain's ctx.ask). */
export interface ReplyWaiter {
  readonly kind: string
  readonly key: string
  readonly method: string
  resolve(value: unknown): void
  reject(err: GrainClusterError): void
}

/** Settle `waiter` from a REPLY envelope: its value, or the typed error it carries. */
export function settleReply(r: EnvelopeReader, codec: PayloadCodec, waiter: ReplyWaiter): void {
  const context = { kind: waiter.kind, key: waiter.key, method: waiter.method }
  if ((r.flags & FLAGS.ERROR) !== 0) {
    waiter.reject(decodeErrorPayload(r.payload(), context))
    return
  }
  let value: unknown
  try {
    value = r.payloadLen === 0 ? undefined : codec.decode(r.buf, r.payloadOff, r.payloadLen)
  } catch (e) {
    waiter.reject(toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_DECODE', context))
    return
  }
  waiter.resolve(value)
}
