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
import { checkRpcSettings, type RpcCallSettings } from '../common/rpc-settings.js'
import type { QueuePolicy } from '../runtime/worker/key-limits.js'
import { checkLimitsAndSchemas, checkMethodSchemas } from './limits-and-schemas.js'

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
  /**
   * Schema versions of this kind's messages this node serves (a caller
   * stamping another one fails with ERR_SCHEMA_MISMATCH); nodes pick the
   * highest common one per kind in the handshake. Default [schemaVersion].
   */
  readonly supportedSchemaVersions?: readonly number[]
  /**
   * JSON Schemas of methods' payloads, for callers that send untyped JSON:
   * the HTTP and WebSocket fronts check a call's payload against its
   * method's schema before the call, with Fastify's validator (ajv, with
   * Fastify's coercion and defaults), and refuse a mismatch with
   * ERR_RPC_BAD_REQUEST listing the problems. A schema that does not
   * compile fails the front's start. Methods without one take any JSON.
   * In-process and grain-to-grain calls are typed by TypeScript instead and
   * are not checked at run time.
   */
  readonly payloadSchemas?: { readonly [M in keyof H & string]?: Readonly<Record<string, unknown>> }
  /**
   * JSON Schemas of methods' results, for the same callers: the HTTP and
   * WebSocket fronts write a call's result with fast-json-stringify (the
   * serializer of Fastify's response schemas) compiled from it, so only
   * the declared properties leave the node and /openapi.json describes the
   * reply. A result that does not fit (a required property missing, a
   * string where an integer is declared) fails the call at the front with
   * ERR_RPC_RESULT_INVALID (500); the grain's call has run. A schema that
   * does not compile fails the front's start.
   */
  readonly resultSchemas?: { readonly [M in keyof H & string]?: Readonly<Record<string, unknown>> }
  /** Calls of one key in flight at once; only `readOnly` methods overlap. Default 1. */
  readonly concurrencyLimit?: number
  /** Calls of one key that may wait; beyond it `queuePolicy` applies. Default 10 000. */
  readonly queueDepth?: number
  /** 'reject' (default): the new call fails with ERR_GRAIN_QUEUE_FULL; 'dropOldest': the oldest waiting call fails with ERR_GRAIN_DROPPED. */
  readonly queuePolicy?: QueuePolicy
  /** Methods that only read state: they may run beside each other (up to concurrencyLimit), never beside a write. */
  readonly readOnly?: readonly (keyof H & string)[]
  /**
   * Methods that always interleave (Orleans' [AlwaysInterleave]): a call
   * runs as soon as it arrives, beside any call of the key and ahead of the
   * queue, and holds nothing, so others do not wait for it either. For
   * handlers that are safe at any await point of the others: status
   * probes, cancellation flags, callbacks. Not counted in concurrencyLimit
   * or queueDepth. A method is either readOnly or interleave.
   */
  readonly interleave?: readonly (keyof H & string)[]
  /**
   * Call-chain reentrancy (Orleans' AllowCallChainReentrancy): a call that
   * a running call of this key caused, directly or through other grains on
   * any node (A → B → A, or a grain asking itself), runs at once inside
   * that call instead of queueing behind it, where it would wait until the
   * ask timed out. Other callers still wait: the key stays exclusive to one
   * call chain at a time. false: such a call fails at once with
   * ERR_GRAIN_DEADLOCK. Default true. Chains are followed through the
   * exclusive calls of a key (not through readOnly calls, which hold no key).
   */
  readonly callChainReentrancy?: boolean
  /**
   * State hand-off (spec 5.4): when ownership of a key moves (a node joins
   * or leaves gracefully), the old owner calls `snapshot` and the new owner
   * builds the state with `restore`. Both or neither; a kind without them is
   * stateless across moves (the new owner starts from `state(key)`).
   * The snapshot must be a value the node's payload codec can carry.
   */
  readonly snapshot?: (ctx: GrainContext<S>) => unknown
  readonly restore?: (snapshot: any, key: string) => S
  /**
   * Refuse to activate from scratch when the previous owner's state could
   * not be obtained (owner crashed or unreachable during the move): calls
   * then fail with ERR_GRAIN_SNAPSHOT_MISSING instead of silently starting
   * from `state(key)`. Brand-new keys (no previous owner had them) still
   * activate normally. Default false.
   */
  readonly requiresSnapshot?: boolean
  /**
   * RPC defaults of this kind's calls (timeout, retries, backoff); a node's
   * `rpc.defaults` sits under them and per-call options over them.
   */
  readonly rpc?: RpcCallSettings
  /** Brand set by defineGrain. */
  readonly __grain: true
}

export interface StatelessGrainDefinition<H extends Record<string, (payload: any) => unknown> = Record<string, (payload: any) => unknown>> {
  readonly kind: string
  readonly handlers: H
  /** JSON Schemas of methods' payloads, checked by the HTTP and WebSocket fronts (as GrainDefinition.payloadSchemas). */
  readonly payloadSchemas?: { readonly [M in keyof H & string]?: Readonly<Record<string, unknown>> }
  /** JSON Schemas of methods' results, written by the HTTP and WebSocket fronts (as GrainDefinition.resultSchemas). */
  readonly resultSchemas?: { readonly [M in keyof H & string]?: Readonly<Record<string, unknown>> }
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
  if ((def.snapshot === undefined) !== (def.restore === undefined)) {
    throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${def.kind} must define both snapshot and restore, or neither`, { kind: def.kind })
  }
  if (def.requiresSnapshot === true && def.snapshot === undefined) {
    throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${def.kind} sets requiresSnapshot but defines no snapshot/restore hooks`, { kind: def.kind })
  }
  checkLimitsAndSchemas(def)
  const rpcIssues = checkRpcSettings(def.rpc, `${def.kind}.rpc`)
  if (rpcIssues.length > 0) throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `invalid rpc settings of grain kind ${def.kind}: ${rpcIssues.join('; ')}`, { kind: def.kind, issues: rpcIssues })
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
  checkMethodSchemas(def)
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
