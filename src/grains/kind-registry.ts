/**
 * The grain kinds a node serves, loaded from the grain modules every worker
 * imports. Methods are addressed on the wire by `messageTypeId(name)`; two
 * method names of one kind that hash alike would be ambiguous, so loading
 * refuses them.
 */

import { GrainClusterError, reasonOf } from '../common/errors.js'
import { messageTypeId } from '../common/hash.js'
import { InternedString } from '../wire/envelope.js'
import type { RpcCallSettings } from '../common/rpc-settings.js'
import type { KeyLimits } from '../runtime/worker/key-limits.js'
import { resolveKeyLimits, resolveSupportedVersions } from './limits-and-schemas.js'
import { type GrainDefinition, grainsOfModule, type Handler, type StatelessGrainDefinition } from './define-grain.js'

export interface MethodEntry {
  readonly name: string
  readonly id: number
  readonly fn: Handler<unknown>
  /** Declared readOnly: may run beside other read-only calls of the key (key-limits.ts). */
  readonly readOnly: boolean
  /** Declared interleave: runs on arrival beside anything, holding nothing. */
  readonly interleave: boolean
}

export interface KindEntry {
  readonly kind: string
  readonly kindBytes: InternedString
  readonly def: GrainDefinition
  readonly schemaVersion: number
  readonly idleTtlMs: number
  /** Versions a caller may stamp (ascending); 0 = unspecified is accepted too. */
  readonly supportedSchemaVersions: readonly number[]
  /** Per-key concurrency and queue limits. */
  readonly limits: KeyLimits
  /** The kind declares snapshot/restore: activations in a cluster ask for the previous owner's state first. */
  readonly handoff: boolean
  /** A call of the call chain running on a key runs at once (true) or fails with ERR_GRAIN_DEADLOCK (false). */
  readonly callChainReentrancy: boolean
  /** Calls of this kind waiting in its keys' mailboxes on this thread (kept by Activation; reported as a gauge). */
  readonly load: { queued: number }
  readonly methodsById: Map<number, MethodEntry>
  readonly methodsByName: Map<string, MethodEntry>
  /** methodsById as parallel arrays, for methodById's scan. */
  readonly methodIds: Float64Array
  readonly methodList: readonly MethodEntry[]
}

/** Beyond this many methods the Map lookup beats a scan. */
const SCAN_METHODS = 16

/**
 * The method a message type names. Message type ids are uint32 hashes, so
 * most are above 2^31 and a Map lookup boxes and hashes a double for every
 * message; a kind has a handful of methods, and scanning their ids is cheaper.
 */
export function methodById(e: KindEntry, id: number): MethodEntry | undefined {
  const ids = e.methodIds
  if (ids.length > SCAN_METHODS) return e.methodsById.get(id)
  for (let i = 0; i < ids.length; i++) if (ids[i] === id) return e.methodList[i]
  return undefined
}

/** What a worker reports to the main thread about one kind (plain data). */
export interface KindDescriptor {
  kind: string
  methods: string[]
  schemaVersion: number
  idleTtlMs: number
  stateless: boolean
  /** Schema versions served (ascending); absent = [schemaVersion]. */
  supportedSchemaVersions?: number[]
  /** Declares snapshot/restore hooks (state hand-off). */
  handoff?: boolean
  /** Activation fails instead of starting fresh when the previous owner's snapshot cannot be obtained. */
  requiresSnapshot?: boolean
  /** RPC defaults the kind declares (defineGrain({ rpc })). */
  rpc?: RpcCallSettings | undefined
  /** JSON Schemas of method payloads the fronts check (defineGrain({ payloadSchemas })). */
  payloadSchemas?: MethodSchemas | undefined
  /** JSON Schemas of method results the fronts write with (defineGrain({ resultSchemas })). */
  resultSchemas?: MethodSchemas | undefined
}

/** JSON Schemas by method name. */
export type MethodSchemas = Readonly<Record<string, Readonly<Record<string, unknown>>>>

function methodSchemasOf(def: { payloadSchemas?: object | undefined; resultSchemas?: object | undefined }): Pick<KindDescriptor, 'payloadSchemas' | 'resultSchemas'> {
  return { payloadSchemas: def.payloadSchemas as MethodSchemas | undefined, resultSchemas: def.resultSchemas as MethodSchemas | undefined }
}

export class KindRegistry {
  readonly kinds = new Map<string, KindEntry>()
  readonly stateless = new Map<string, StatelessGrainDefinition>()

  add(def: GrainDefinition): KindEntry {
    const existing = this.kinds.get(def.kind)
    if (existing !== undefined) {
      if (existing.def === def) return existing
      throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${def.kind} is defined twice`, { kind: def.kind })
    }
    if (this.stateless.has(def.kind)) {
      throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${def.kind} is defined twice (stateful and stateless)`, { kind: def.kind })
    }
    const readOnly = new Set<string>(def.readOnly ?? [])
    const interleave = new Set<string>(def.interleave ?? [])
    const methodsById = new Map<number, MethodEntry>()
    const methodsByName = new Map<string, MethodEntry>()
    for (const [name, fn] of Object.entries(def.handlers)) {
      const id = messageTypeId(name)
      const clash = methodsById.get(id)
      if (clash !== undefined) {
        throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `methods ${clash.name} and ${name} of ${def.kind} share message type id ${id}; rename one`, {
          kind: def.kind,
          method: name,
        })
      }
      const m: MethodEntry = { name, id, fn, readOnly: readOnly.has(name), interleave: interleave.has(name) }
      methodsById.set(id, m)
      methodsByName.set(name, m)
    }
    const entry: KindEntry = {
      kind: def.kind,
      kindBytes: new InternedString(def.kind),
      def,
      schemaVersion: def.schemaVersion ?? 1,
      idleTtlMs: def.idleTtlMs ?? 0,
      supportedSchemaVersions: resolveSupportedVersions(def),
      limits: resolveKeyLimits(def),
      handoff: def.snapshot !== undefined && def.restore !== undefined,
      callChainReentrancy: def.callChainReentrancy ?? true,
      load: { queued: 0 },
      methodsById,
      methodsByName,
      methodIds: Float64Array.from(methodsById.keys()),
      methodList: [...methodsById.values()],
    }
    this.kinds.set(def.kind, entry)
    return entry
  }

  addStateless(def: StatelessGrainDefinition): void {
    const existing = this.stateless.get(def.kind)
    if (existing === def) return
    if (existing !== undefined || this.kinds.has(def.kind)) {
      throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${def.kind} is defined twice`, { kind: def.kind })
    }
    this.stateless.set(def.kind, def)
  }

  /** Import grain modules and register every definition they export. */
  static async load(moduleUrls: readonly string[]): Promise<KindRegistry> {
    const reg = new KindRegistry()
    for (const url of moduleUrls) {
      let mod: Record<string, unknown>
      try {
        mod = (await import(url)) as Record<string, unknown>
      } catch (e) {
        throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `cannot import grain module ${url}: ${reasonOf(e)}`, {
          module: url,
        })
      }
      const { stateful, stateless } = grainsOfModule(mod)
      if (stateful.length === 0 && stateless.length === 0) {
        throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain module ${url} exports no grain definition (use defineGrain)`, { module: url })
      }
      for (const d of stateful) reg.add(d)
      for (const d of stateless) reg.addStateless(d)
    }
    return reg
  }

  describe(): KindDescriptor[] {
    const out: KindDescriptor[] = []
    for (const e of this.kinds.values()) {
      out.push({ kind: e.kind, methods: [...e.methodsByName.keys()], schemaVersion: e.schemaVersion, idleTtlMs: e.idleTtlMs, stateless: false, handoff: e.handoff, requiresSnapshot: e.def.requiresSnapshot === true, rpc: e.def.rpc, supportedSchemaVersions: [...e.supportedSchemaVersions], ...methodSchemasOf(e.def) })
    }
    for (const d of this.stateless.values()) {
      out.push({ kind: d.kind, methods: Object.keys(d.handlers), schemaVersion: 1, idleTtlMs: 0, stateless: true, ...methodSchemasOf(d) })
    }
    return out
  }
}
