/**
 * POST /rpc/:kind/:key/:method — one grain call per request. The JSON body
 * is the payload (an empty body is `undefined`); the reply is `{ result }`.
 */

import type { FastifyInstance } from 'fastify'
import type { FrontNode } from '../front-node.js'
import { ERROR_BODY_SCHEMA } from '../http-errors.js'
import { checkTarget, KIND_PATTERN, MAX_KEY_LENGTH, MAX_METHOD_LENGTH, MAX_TIMEOUT_MS } from './call-target.js'
import { checkedPayload, compilePayloadSchemasOnReady } from './payload-schemas.js'
import type { ResultSerializers } from './result-schemas.js'

interface RpcRoute {
  Params: { kind: string; key: string; method: string }
  Headers: { 'x-timeout-ms'?: number }
  Body: unknown
}

const schema = {
  params: {
    type: 'object',
    properties: {
      kind: { type: 'string', pattern: KIND_PATTERN },
      key: { type: 'string', minLength: 1, maxLength: MAX_KEY_LENGTH },
      method: { type: 'string', minLength: 1, maxLength: MAX_METHOD_LENGTH },
    },
    required: ['kind', 'key', 'method'],
  },
  headers: {
    type: 'object',
    properties: { 'x-timeout-ms': { type: 'integer', minimum: 1, maximum: MAX_TIMEOUT_MS } },
  },
  response: {
    // `result` is whatever the grain returned: any JSON value (a method's result schema, if any, writes it instead).
    200: { type: 'object', properties: { result: {} } },
    '4xx': ERROR_BODY_SCHEMA,
    '5xx': ERROR_BODY_SCHEMA,
  },
} as const

/**
 * The body parser of routes whose body reaches user grains: JSON only (a
 * text/plain body would otherwise arrive as a string payload), an empty
 * body is `undefined`, and the rest goes through Fastify's own JSON parser
 * with its __proto__/constructor poisoning checks. Call it inside the
 * routes' own plugin: it replaces that context's parsers.
 */
export function usePayloadParser(app: FastifyInstance): void {
  const json = app.getDefaultJsonParser('error', 'error')
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') return done(null, undefined)
    void json(req, text, done)
  })
}

export function rpcRoutes(node: FrontNode, results: ResultSerializers): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    usePayloadParser(app)

    compilePayloadSchemasOnReady(app, node)
    app.post<RpcRoute>('/rpc/:kind/:key/:method', { schema }, async (req, reply) => {
      const { kind, key, method } = req.params
      checkTarget(node, kind, key, method)
      const payload = checkedPayload(node, req, kind, key, method, req.body)
      const timeoutMs = req.headers['x-timeout-ms']
      const result = await node.ask(kind, key, method, payload, timeoutMs === undefined ? undefined : { timeoutMs })
      const text = results.text(kind, key, method, result)
      if (text === undefined) return { result }
      return reply.type('application/json; charset=utf-8').send(`{"result":${text}}`)
    })
  }
}
