/**
 * GET /openapi.json — an OpenAPI 3.1 description of the grain RPC this node
 * serves over HTTP: one POST operation per kind and method (the generic
 * `/rpc/:kind/:key/:method` route, spelled out), with the method's payload
 * schema (defineGrain({ payloadSchemas })) as its request body, its result
 * schema (resultSchemas) in the 200 response, the
 * `x-timeout-ms` header and the error body. Clients generate code and docs
 * from it; the WebSocket endpoint carries the same calls. Behind the token,
 * like the calls it describes.
 */

import type { FastifyInstance } from 'fastify'
import type { FrontKindInfo, FrontNode } from '../front-node.js'
import { ERROR_BODY_SCHEMA } from '../http-errors.js'
import { MAX_KEY_LENGTH, MAX_TIMEOUT_MS } from './call-target.js'

/** The version of the HTTP RPC protocol this document describes (routes, headers, bodies). */
export const RPC_PROTOCOL_VERSION = '1.0.0'

type Json = Record<string, unknown>

function operation(kind: string, method: string, info: FrontKindInfo): Json {
  const schema = info.payloadSchemas?.[method]
  const resultSchema = info.resultSchemas?.[method]
  const versions = info.supportedSchemaVersions
  return {
    operationId: `${kind}.${method}`,
    summary: `${kind}.${method}`,
    tags: [kind],
    parameters: [
      { name: 'key', in: 'path', required: true, description: 'grain key', schema: { type: 'string', minLength: 1, maxLength: MAX_KEY_LENGTH } },
      { name: 'x-timeout-ms', in: 'header', required: false, description: 'how long to wait for the reply, ms (default: the kind\'s, else the node\'s)', schema: { type: 'integer', minimum: 1, maximum: MAX_TIMEOUT_MS } },
    ],
    requestBody:
      schema === undefined
        ? { required: false, description: 'the payload: any JSON value (an empty body is none)', content: { 'application/json': { schema: {} } } }
        : { required: true, description: 'the payload, checked against this schema before the call', content: { 'application/json': { schema } } },
    responses: {
      '200':
        resultSchema === undefined
          ? { description: 'the grain\'s reply: any JSON value', content: { 'application/json': { schema: { type: 'object', properties: { result: {} } } } } }
          : { description: 'the grain\'s reply, written with this schema', content: { 'application/json': { schema: { type: 'object', properties: { result: resultSchema }, required: ['result'] } } } },
      '4XX': { $ref: '#/components/responses/Error' },
      '5XX': { $ref: '#/components/responses/Error' },
    },
    ...(versions === undefined ? {} : { 'x-schema-versions': [...versions] }),
  }
}

/** The OpenAPI 3.1 document for `node`'s kinds. */
export function openApiDocument(node: FrontNode, withToken: boolean): Json {
  const paths: Json = {}
  for (const [kind, info] of [...node.kinds].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const method of [...info.methods.keys()].sort()) {
      paths[`/rpc/${encodeURIComponent(kind)}/{key}/${encodeURIComponent(method)}`] = { post: operation(kind, method, info) }
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 'graincluster grain RPC', version: RPC_PROTOCOL_VERSION, description: 'One POST per grain call; errors are { error: { code, reason, details } } with the HTTP status of their code.' },
    paths,
    components: {
      schemas: { Error: ERROR_BODY_SCHEMA },
      responses: { Error: { description: 'a typed error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } } },
      ...(withToken ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } } : {}),
    },
    ...(withToken ? { security: [{ bearer: [] }] } : {}),
  }
}

export function openApiRoutes(node: FrontNode, withToken: boolean): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    // The kinds are fixed once the node runs: build the document on first use, then serve the same text.
    let text: string | undefined
    app.get('/openapi.json', async (_req, reply) => {
      text ??= JSON.stringify(openApiDocument(node, withToken))
      return reply.type('application/json').send(text)
    })
  }
}
