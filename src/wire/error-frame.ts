/**
 * Payload of an ERROR reply: the typed error's wire form as JSON. Always
 * JSON, whatever the node's payload codec, so an error stays readable even
 * when the codec is what failed.
 */

import { type ErrorDetails, fromWire, GrainClusterError, toWire } from '../common/errors.js'
import { type EnvelopeWriter, FLAGS } from './envelope.js'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function encodeErrorPayload(err: GrainClusterError): Uint8Array {
  return encoder.encode(JSON.stringify(toWire(err)))
}

/** Rebuild the error; `context` fills in kind/key/method the far side left out. */
export function decodeErrorPayload(bytes: Uint8Array, context: ErrorDetails = {}): GrainClusterError {
  let parsed: unknown
  try {
    parsed = JSON.parse(decoder.decode(bytes))
  } catch {
    return new GrainClusterError('ERR_FRAME_MALFORMED', 'error reply carried an unreadable payload', context)
  }
  const e = fromWire(parsed)
  return new GrainClusterError(e.code, e.reason, { ...context, ...e.details })
}

/** Fill `w` (reset) with the ERROR reply to ask `correlationId` of thread `replyTo`. */
export function prepareErrorReply(w: EnvelopeWriter, correlationId: number, replyTo: number, err: GrainClusterError): EnvelopeWriter {
  w.reset()
  w.flags = FLAGS.REPLY | FLAGS.ERROR
  w.correlationId = correlationId
  w.replyTo = replyTo
  w.payloadBytes = encodeErrorPayload(err)
  return w
}
