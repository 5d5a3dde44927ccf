/**
 * The payload check of both RPC routes: a call's JSON payload against its
 * method's JSON Schema (defineGrain({ payloadSchemas })), compiled by the
 * route's Fastify validator compiler (ajv, with Fastify's type coercion,
 * defaults and removeAdditional), once per schema and route. The payload is
 * validated as the `payload` property of a holder object so that coercion
 * and defaults reach a top-level value too (ajv cannot replace the root
 * value it is given).
 */

import type { FastifyInstance, FastifyRequest } from 'fastify'
import { GrainClusterError, reasonOf } from '../../common/errors.js'
import type { FrontNode } from '../front-node.js'

type Schema = Readonly<Record<string, unknown>>

const holders = new WeakMap<Schema, Schema>()

/** The schema of `{ payload }` for a method's payload schema, one object per schema (Fastify caches compiled validators by object). */
function holderOf(schema: Schema): Schema {
  let h = holders.get(schema)
  if (h === undefined) holders.set(schema, (h = { type: 'object', properties: { payload: schema }, required: ['payload'] }))
  return h
}

/**
 * The payload to call kind.method with: as given when the method declares
 * no schema, else validated (and coerced, defaults filled in). Throws
 * ERR_RPC_BAD_REQUEST listing the problems when it does not match.
 */
export function checkedPayload(node: FrontNode, req: FastifyRequest, kind: string, key: string, method: string, payload: unknown): unknown {
  const schema = node.kinds.get(kind)?.payloadSchemas?.[method]
  if (schema === undefined) return payload
  const refuse = (issues: string[]): GrainClusterError =>
    new GrainClusterError('ERR_RPC_BAD_REQUEST', `the payload of ${kind}.${method} does not match its schema: ${issues.join('; ')}`, { kind, key, method, issues })
  if (payload === undefined) throw refuse(['payload is missing (the method declares a payload schema)'])
  const validate = req.compileValidationSchema(holderOf(schema), 'body')
  const holder = { payload }
  if (validate(holder)) return holder.payload
  const errors = (validate.errors ?? []) as { instancePath?: string; message?: string }[]
  throw refuse(errors.length === 0 ? ['payload is invalid'] : errors.map((e) => `payload${(e.instancePath ?? '').replace(/^\/payload/, '')}: ${e.message ?? 'is invalid'}`))
}

/** A method schema (payloadSchemas or resultSchemas) the front could not compile: the front does not start. */
export function schemaNotCompiled(field: 'payloadSchemas' | 'resultSchemas', kind: string, method: string, e: unknown): GrainClusterError {
  return new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${kind}: ${field}.${method} is not a valid JSON Schema: ${reasonOf(e)}`, { kind, method })
}

/**
 * Compile every declared payload schema with the app's validator compiler
 * when the app is ready, so a schema that does not compile fails the
 * front's start (ERR_GRAIN_DEFINITION_INVALID naming kind and method)
 * rather than its first call.
 */
export function compilePayloadSchemasOnReady(app: FastifyInstance, node: FrontNode): void {
  app.addHook('onReady', async function () {
    const compile = this.validatorCompiler
    if (compile === undefined) return
    for (const [kind, info] of node.kinds) {
      for (const [method, schema] of Object.entries(info.payloadSchemas ?? {})) {
        try {
          compile({ schema: holderOf(schema), method: 'POST', url: `/rpc/${kind}/:key/${method}`, httpPart: 'body' })
        } catch (e) {
          throw schemaNotCompiled('payloadSchemas', kind, method, e)
        }
      }
    }
  })
}
