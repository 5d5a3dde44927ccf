/**
 * GET /ws — many grain calls multiplexed on one WebSocket.
 *
 *   client → { id, kind, key, method, payload?, timeoutMs? }   (JSON text frame)
 *   client → { id, publish: topic, payload? }                   (PubSub publish; result: the PublishResult)
 *   server → { id, result }  |  { id, error: { code, reason, details } }
 *
 * Replies go out as calls complete, so they may come back in any order; the
 * client matches them by `id` (a string or a finite number, unique among its
 * calls in flight).
 *
 * Batches (as in JSON-RPC): a frame may carry an array of calls. Replies to
 * calls that came in batches are batched too: those that complete in one
 * event-loop turn leave as one JSON array frame (calls sent one per frame
 * are answered one per frame). Framing
 * and parsing per frame, not per call, is what makes many small calls cheap
 * on both ends. A malformed frame gets an ERR_RPC_BAD_REQUEST reply
 * (with its id when one could be read, else `id: null`) and the connection
 * stays open. Only a frame over maxPayload closes it (1009): `ws` enforces
 * that before the frame is ever buffered whole.
 */

import type { FastifyInstance } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { GrainClusterError, toGrainClusterError } from '../../common/errors.js'
import type { FrontNode } from '../front-node.js'
import { errorReply } from '../http-errors.js'
import { callIssues, checkTarget } from './call-target.js'
import { checkedPayload } from './payload-schemas.js'
import type { ResultSerializers } from './result-schemas.js'

export interface WsRouteOptions {
  /** Calls one connection may have in flight; beyond, ERR_RPC_TOO_MANY_IN_FLIGHT. */
  maxInFlight: number
  /** Unsent reply bytes above which new calls are refused the same way (a client that does not read). */
  maxBufferedBytes: number
}

type CallId = string | number
const MAX_ID_LENGTH = 256
// The check secure-json-parse (Fastify's JSON parser) applies: payloads reach user grains.
const PROTO_KEY = /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"\s*:/
const OPEN = 1 // WebSocket.OPEN

const bad = (reason: string, details: Record<string, unknown> = {}): GrainClusterError => new GrainClusterError('ERR_RPC_BAD_REQUEST', reason, details)

function readId(msg: Record<string, unknown>): CallId | undefined {
  const id = msg.id
  if (typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_LENGTH) return id
  if (typeof id === 'number' && Number.isFinite(id)) return id
  return undefined
}

export function wsRoutes(node: FrontNode, results: ResultSerializers, o: WsRouteOptions): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    app.get('/ws', { websocket: true }, (socket: WebSocket, req) => {
      const inFlight = new Set<CallId>()

      // Replies that complete in one event-loop turn leave in one write: the
      // TCP socket is corked at the first and uncorked after the turn.
      const tcp = (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket
      let corked = false
      const uncork = (): void => {
        corked = false
        tcp?.uncork()
      }
      // Replies to batched calls: those of one turn join one array frame.
      let pending: string[] = []
      const flushBatch = (): void => {
        const parts = pending
        pending = []
        if (parts.length > 0 && socket.readyState === OPEN) socket.send(`[${parts.join(',')}]`)
      }
      /** `resultText`: the result as its method's result schema wrote it. */
      const send = (msg: { id: CallId | null; result?: unknown; error?: unknown }, batched = false, resultText?: string): void => {
        if (socket.readyState !== OPEN) return // the client left; its late replies are dropped
        let text: string
        try {
          text = resultText === undefined ? JSON.stringify(msg) : `{"id":${JSON.stringify(msg.id)},"result":${resultText}}`
        } catch (e) {
          const err = toGrainClusterError(e, 'ERR_GRAIN_PAYLOAD_ENCODE')
          text = JSON.stringify({ id: msg.id, error: errorReply(err).body.error })
        }
        if (batched) {
          if (pending.length === 0) setImmediate(flushBatch)
          pending.push(text)
          return
        }
        if (!corked && tcp !== undefined) {
          corked = true
          tcp.cork()
          setImmediate(uncork)
        }
        socket.send(text)
      }
      const failTo = (id: CallId | null, e: GrainClusterError, batched: boolean): void => send({ id, error: errorReply(e).body.error }, batched)
      const fail = (id: CallId | null, e: GrainClusterError): void => failTo(id, e, false)

      const onMessage = (data: RawData, isBinary: boolean): void => {
        if (isBinary) return fail(null, bad('binary frames are not accepted: send each call as a JSON text frame'))
        const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data instanceof ArrayBuffer ? Buffer.from(data).toString('utf8') : data.toString('utf8')
        let msg: unknown
        try {
          msg = JSON.parse(text)
        } catch (e) {
          return fail(null, bad(`frame is not valid JSON: ${(e as Error).message}`))
        }
        // Checked once per frame: a batch with a __proto__ key anywhere is refused whole.
        const poisoned = PROTO_KEY.test(text)
        if (Array.isArray(msg)) {
          if (msg.length === 0) return fail(null, bad('an empty batch carries no call'))
          if (msg.length > o.maxInFlight) return fail(null, bad(`a batch may carry at most ${o.maxInFlight} calls (got ${msg.length})`, { limit: o.maxInFlight }))
          for (const one of msg as unknown[]) onCall(one, poisoned, true)
          return
        }
        onCall(msg, poisoned, false)
      }

      const onCall = (msg: unknown, poisoned: boolean, batched: boolean): void => {
        const fail = (id: CallId | null, e: GrainClusterError): void => failTo(id, e, batched)
        if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return fail(null, bad('a call must be a JSON object { id, kind, key, method, payload?, timeoutMs? }'))
        const m = msg as Record<string, unknown>
        const id = readId(m)
        if (id === undefined) return fail(null, bad(`id must be a non-empty string of at most ${MAX_ID_LENGTH} characters or a finite number`))
        if (poisoned) return fail(id, bad('payload contains a "__proto__" key'))
        if (m.publish !== undefined) return onPublish(id, m, fail, batched)
        const issues = callIssues(m.kind, m.key, m.method, m.timeoutMs)
        if (issues.length > 0) return fail(id, bad(`invalid call: ${issues.join('; ')}`, { issues }))
        const kind = m.kind as string
        const key = m.key as string
        const method = m.method as string
        const refused = refusal(id, { kind, key, method })
        if (refused !== undefined) return fail(id, refused)
        let payload: unknown
        try {
          checkTarget(node, kind, key, method)
          payload = checkedPayload(node, req, kind, key, method, m.payload)
        } catch (e) {
          return fail(id, toGrainClusterError(e))
        }
        const timeoutMs = m.timeoutMs as number | undefined
        run(id, batched, fail, () => node.ask(kind, key, method, payload, timeoutMs === undefined ? undefined : { timeoutMs }), (result) => results.text(kind, key, method, result))
      }

      /** Why call `id` may not start now (a duplicate id, or the connection at its limits), or undefined. */
      const refusal = (id: CallId, details: Record<string, unknown>): GrainClusterError | undefined => {
        if (inFlight.has(id)) return bad(`id ${JSON.stringify(id)} is already in flight on this connection`, details)
        if (inFlight.size < o.maxInFlight && socket.bufferedAmount <= o.maxBufferedBytes) return undefined
        const why = inFlight.size >= o.maxInFlight ? `${inFlight.size} calls in flight` : `${socket.bufferedAmount} reply bytes unsent`
        return new GrainClusterError('ERR_RPC_TOO_MANY_IN_FLIGHT', `connection has ${why}; wait for replies before sending more calls`, { ...details, limit: o.maxInFlight })
      }

      /** Start `start` as call `id`, counted in flight until it settles, and reply with its result (`text`: the result as its result schema writes it) or error. */
      const run = (id: CallId, batched: boolean, fail: (id: CallId | null, e: GrainClusterError) => void, start: () => Promise<unknown>, text?: (result: unknown) => string | undefined): void => {
        inFlight.add(id)
        let call: Promise<unknown>
        try {
          call = start()
        } catch (e) {
          call = Promise.reject(toGrainClusterError(e))
        }
        call.then(
          (result) => {
            inFlight.delete(id)
            let written: string | undefined
            try {
              written = text?.(result)
            } catch (e) {
              return fail(id, toGrainClusterError(e))
            }
            send({ id, result }, batched, written)
          },
          (e: unknown) => {
            inFlight.delete(id)
            fail(id, toGrainClusterError(e))
          },
        )
      }

      /** A PubSub publish: counted in flight like a call, answered with the PublishResult. */
      const onPublish = (id: CallId, m: Record<string, unknown>, fail: (id: CallId | null, e: GrainClusterError) => void, batched: boolean): void => {
        const topic = m.publish
        if (typeof topic !== 'string' || topic.length === 0) return fail(id, bad('publish must name a topic (a non-empty string)'))
        const refused = refusal(id, { topic })
        if (refused !== undefined) return fail(id, refused)
        const pubsub = node.pubsub
        if (pubsub === undefined) return fail(id, new GrainClusterError('ERR_PUBSUB_INVALID', 'this node offers no PubSub', { topic }))
        run(id, batched, fail, () => pubsub.publish(topic, m.payload))
      }

      socket.on('message', (data: RawData, isBinary: boolean) => {
        // A listener that throws would surface as an uncaught exception on the node.
        try {
          onMessage(data, isBinary)
        } catch (e) {
          req.log.error({ err: e }, 'websocket message handler failed')
        }
      })
      // Protocol errors (oversized or invalid frames) end the socket; without a listener they would crash the process.
      socket.on('error', (err: Error) => req.log.debug({ err }, 'websocket error'))
    })
  }
}
