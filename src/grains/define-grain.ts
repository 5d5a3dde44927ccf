/**
 * The grain definition API. A grain kind is a name, a state factory and a
 * set of message handlers; graincluster activates one instance per key on
 * first message and runs one message at a time per activation.
 *
 *   export default defineGrain({
 *     kind: 'counter',
 *     state: () => ({ count: 0 }),
 *     handlers: {
 *       add(ctx, by: number) { ctx.state.count += by; return ctx.state.count },
 *       get(ctx) { return ctx.state.count },
 *     },
 *   })
 *
 * Definitions live in modules that every worker thread imports (pass their
 * URLs to the node as `grains`), so handlers run on workers, never on the
 * main thread.
 */

import { GrainClusterError } from '../common/errors.js'
import type { GrainContext } from './grain-context.js'

// biome-ignore lint: handler payloads are user-typed
export type Handler<S> = (ctx: GrainContext<S>, payload: any) => unknown

export interface GrainDefinition<S = unknown, H extends Record<string, Handler<S>> = Record<string, Handler<S>>> {
  /** Unique kind name, e.g. 'counter'. */
  readonly kind: string
  /** Creates the state of a new activation (called on activation). */
  readonly state?: (key: string) => S
  /** Message handlers by method name. */
  readonly handlers: H
  /** Runs before the first message of an activation; may be async. */
  readonly onActivate?: (ctx: GrainContext<S>) => unknown
  /** Runs when the activation is passivated or the worker shuts down. */
  readonly onDeactivate?: (ctx: GrainContext<S>) => unknown
  /** Passivate an activation idle this long (ms). 0 = never. Default 0. */
  readonly idleTtlMs?: number
  /** Payload schema version of this kind's messages. Default 1. */
  readonly schemaVersion?: number
  /** Brand set by defineGrain. */
  readonly __grain: true
}

export interface StatelessGrainDefinition<H extends Record<string, (payload: any) => unknown> = Record<string, (payload: any) => unknown>> {
  readonly kind: string
  readonly handlers: H
  readonly __statelessGrain: true
}

const KIND_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/

function checkKindAndHandlers(kind: unknown, handlers: unknown): void {
  if (typeof kind !== 'string' || !KIND_RE.test(kind)) {
    throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind must match ${KIND_RE} (got ${JSON.stringify(kind)})`, {
      kind: String(kind),
    })
  }
  if (typeof handlers !== 'object' || handlers === null) {
    throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${kind} needs a handlers object`, { kind })
  }
  for (const [name, fn] of Object.entries(handlers)) {
    if (typeof fn !== 'function') {
      throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `handler ${kind}.${name} is not a function`, { kind, method: name })
    }
  }
}

export function defineGrain<S, H extends Record<string, Handler<S>>>(
  def: Omit<GrainDefinition<S, H>, '__grain'>,
): GrainDefinition<S, H> {
  checkKindAndHandlers(def.kind, def.handlers)
  const ttl = def.idleTtlMs ?? 0
  if (!Number.isFinite(ttl) || ttl < 0) {
    throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `idleTtlMs of ${def.kind} must be >= 0 (got ${ttl})`, { kind: def.kind })
  }
  return Object.freeze({ ...def, __grain: true as const })
}

/**
 * A stateless worker grain: no activation, no state, any key; calls run on a
 * piscina pool so CPU-bound work spreads over all threads.
 */
export function defineStatelessGrain<H extends Record<string, (payload: any) => unknown>>(
  def: Omit<StatelessGrainDefinition<H>, '__statelessGrain'>,
): StatelessGrainDefinition<H> {
  checkKindAndHandlers(def.kind, def.handlers)
  return Object.freeze({ ...def, __statelessGrain: true as const })
}

export function isGrainDefinition(u: unknown): u is GrainDefinition {
  return typeof u === 'object' && u !== null && (u as { __grain?: unknown }).__grain === true
}
export function isStatelessGrainDefinition(u: unknown): u is StatelessGrainDefinition {
  return typeof u === 'object' && u !== null && (u as { __statelessGrain?: unknown }).__statelessGrain === true
}

/** Every grain definition exported by a module (default and named exports). */
export function grainsOfModule(mod: Record<string, unknown>): { stateful: GrainDefinition[]; stateless: StatelessGrainDefinition[] } {
  const stateful = new Set<GrainDefinition>()
  const stateless = new Set<StatelessGrainDefinition>()
  for (const v of Object.values(mod)) {
    if (isGrainDefinition(v)) stateful.add(v)
    else if (isStatelessGrainDefinition(v)) stateless.add(v)
  }
  return { stateful: [...stateful], stateless: [...stateless] }
}

/** Payload type of a handler. */
export type PayloadOf<F> = F extends (ctx: any, payload: infer P) => unknown ? P : F extends (payload: infer P) => unknown ? P : never
/** Awaited result type of a handler. */
export type ResultOf<F> = F extends (...args: any[]) => infer R ? Awaited<R> : never
