/**
 * Typed grain proxies: `await node.grain(Counter, 'k1').add(5)` checks the
 * payload against the handler's parameter and returns its awaited result
 * type; `node.grainTell(Counter, 'k1').add(5)` is the fire-and-forget twin.
 * A proxy holds no state beyond the target: every method call is one
 * `node.ask` (or `tell`), so it goes through the same RPC client, placement
 * and retry policy.
 *
 * Fire-and-forget is a separate proxy rather than a `.tell` member so that a
 * grain may have a method named `tell`. `then` is never a method: a proxy
 * must not look like a promise (`await proxy` would call it).
 */

import type { GrainDefinition, ResultOf, StatelessGrainDefinition } from '../grains/define-grain.js'

type HandlersOf<D> = D extends GrainDefinition<any, infer H> ? H : D extends StatelessGrainDefinition<infer H> ? H : never

/** Arguments after the handler's context (stateful) or all of them (stateless): `[]`, `[payload]` or `[payload?]`. */
type ArgsOf<D, F> = D extends GrainDefinition<any, any> ? (F extends (ctx: any, ...rest: infer A) => unknown ? A : never) : F extends (...args: infer A) => unknown ? A : never

/** `node.grain(Def, key)`: one async method per handler. */
export type GrainProxy<D> = {
  readonly [M in Exclude<keyof HandlersOf<D>, 'then'> & string]: (...args: ArgsOf<D, HandlersOf<D>[M]>) => Promise<ResultOf<HandlersOf<D>[M]>>
}

/** `node.grainTell(Def, key)`: one fire-and-forget method per handler. */
export type GrainTellProxy<D> = {
  readonly [M in Exclude<keyof HandlersOf<D>, 'then'> & string]: (...args: ArgsOf<D, HandlersOf<D>[M]>) => void
}

/** `node.grain('kind', key)`: any method name, unchecked payload and result. */
export type UntypedGrainProxy = { readonly [method: string]: (payload?: unknown) => Promise<unknown> }
export type UntypedGrainTellProxy = { readonly [method: string]: (payload?: unknown) => void }

/** A proxy whose method `m(payload)` is `send(m, payload)`; methods are made once per name. */
export function createGrainProxy<T extends object>(send: (method: string, payload: unknown) => unknown): T {
  const methods = new Map<string, (payload?: unknown) => unknown>()
  return new Proxy(Object.create(null) as object, {
    get(_, prop) {
      if (typeof prop !== 'string' || prop === 'then') return undefined
      let fn = methods.get(prop)
      if (fn === undefined) {
        fn = (payload?: unknown) => send(prop, payload)
        methods.set(prop, fn)
      }
      return fn
    },
    has: (_, prop) => typeof prop === 'string' && prop !== 'then',
    set: () => false,
  }) as T
}
