/**
 * The reply side of both RPC routes: a method's result schema
 * (defineGrain({ resultSchemas })) writes its result with
 * fast-json-stringify, the serializer Fastify compiles response schemas
 * with. So only the declared properties leave the node (a grain's internal
 * fields do not leak to HTTP clients), values are coerced the way a Fastify
 * response schema coerces them, and an object result is written faster
 * than by JSON.stringify. Compiled once per method when the front is built:
 * a schema that does not compile fails the build, not a call.
 *
 * A result that cannot be written to its schema (a required property
 * missing, "abc" where an integer is declared) fails the call with
 * ERR_RPC_RESULT_INVALID (500) instead of sending something the schema
 * does not promise; it is published as rpc.serialization-failed (encode,
 * reply) and so counted. The grain's call has run by then.
 */

import fastJson from 'fast-json-stringify'
import { GrainClusterError, reasonOf } from '../../common/errors.js'
import type { FrontNode } from '../front-node.js'
import { schemaNotCompiled } from './payload-schemas.js'

type Serialize = (value: unknown) => string

export class ResultSerializers {
  readonly #byKind = new Map<string, Map<string, Serialize>>()
  readonly #node: FrontNode

  /** Throws ERR_GRAIN_DEFINITION_INVALID (kind, method) for a schema fast-json-stringify cannot compile. */
  constructor(node: FrontNode) {
    this.#node = node
    for (const [kind, info] of node.kinds) {
      for (const [method, schema] of Object.entries(info.resultSchemas ?? {})) {
        let serialize: Serialize
        try {
          serialize = fastJson(schema as unknown as Parameters<typeof fastJson>[0])
        } catch (e) {
          throw schemaNotCompiled('resultSchemas', kind, method, e)
        }
        let methods = this.#byKind.get(kind)
        if (methods === undefined) this.#byKind.set(kind, (methods = new Map()))
        methods.set(method, serialize)
      }
    }
  }

  /**
   * The JSON text of `result` as its method's schema writes it; undefined
   * when the method declares none (the route writes it as it is). Throws
   * ERR_RPC_RESULT_INVALID when it does not fit.
   */
  text(kind: string, key: string, method: string, result: unknown): string | undefined {
    if (this.#byKind.size === 0) return undefined
    const serialize = this.#byKind.get(kind)?.get(method)
    if (serialize === undefined) return undefined
    try {
      return serialize(result)
    } catch (e) {
      const reason = `the result of ${kind}.${method} does not fit its result schema: ${reasonOf(e)}`
      this.#node.events.publish({ type: 'rpc.serialization-failed', kind, key, method, direction: 'encode', message: 'reply', code: 'ERR_RPC_RESULT_INVALID', reason })
      throw new GrainClusterError('ERR_RPC_RESULT_INVALID', reason, { kind, key, method })
    }
  }
}
