/**
 * The per-key limits and schema versions a grain kind declares, validated at
 * defineGrain() time and resolved (defaults filled in) by the KindRegistry.
 */

import { GrainClusterError } from '../common/errors.js'
import { DEFAULT_CONCURRENCY_LIMIT, DEFAULT_QUEUE_DEPTH, DEFAULT_QUEUE_POLICY, type KeyLimits, keyLimitIssues, type QueuePolicy } from '../runtime/worker/key-limits.js'

/** Envelope schema_version is a u16; 0 means "unspecified" (a caller that does not know the kind). */
export const MAX_SCHEMA_VERSION = 0xffff

interface Declared {
  readonly kind: string
  readonly handlers: object
  readonly schemaVersion?: number
  readonly supportedSchemaVersions?: readonly number[]
  readonly concurrencyLimit?: number
  readonly queueDepth?: number
  readonly queuePolicy?: QueuePolicy
  readonly readOnly?: readonly string[]
  readonly interleave?: readonly string[]
  readonly callChainReentrancy?: boolean
  readonly payloadSchemas?: object
  readonly resultSchemas?: object
}

/** A JSON value all the way down: what a worker's ready report can carry to the main thread. */
function isJson(v: unknown, depth = 0): boolean {
  if (depth > 64) return false
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true
  if (typeof v === 'number') return Number.isFinite(v)
  if (Array.isArray(v)) return v.every((x) => isJson(x, depth + 1))
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) return Object.values(v).every((x) => isJson(x, depth + 1))
  return false
}

type MethodSchemasField = 'payloadSchemas' | 'resultSchemas'

function methodSchemaIssues(def: Pick<Declared, 'handlers' | MethodSchemasField>, field: MethodSchemasField): string[] {
  const schemas = def[field]
  if (schemas === undefined) return []
  if (typeof schemas !== 'object' || schemas === null || Array.isArray(schemas)) return [`${field} must be an object of JSON Schemas by method name`]
  const issues: string[] = []
  for (const [m, schema] of Object.entries(schemas)) {
    if (!Object.hasOwn(def.handlers, m)) issues.push(`${field} names ${JSON.stringify(m)}, which is not a handler`)
    else if (typeof schema !== 'object' || schema === null || Array.isArray(schema) || !isJson(schema)) issues.push(`${field}.${m} must be a JSON Schema object of plain JSON values`)
  }
  return issues
}

function methodSchemasIssues(def: Pick<Declared, 'handlers' | MethodSchemasField>): string[] {
  return [...methodSchemaIssues(def, 'payloadSchemas'), ...methodSchemaIssues(def, 'resultSchemas')]
}

/** Throws ERR_GRAIN_DEFINITION_INVALID when a kind's payload or result schemas are malformed (stateless kinds have no other limits to check). */
export function checkMethodSchemas(def: Pick<Declared, 'kind' | 'handlers' | MethodSchemasField>): void {
  const issues = methodSchemasIssues(def)
  if (issues.length > 0) throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${def.kind}: ${issues.join('; ')}`, { kind: def.kind, issues })
}

function isVersion(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_SCHEMA_VERSION
}

/** Throws ERR_GRAIN_DEFINITION_INVALID listing every problem. */
export function checkLimitsAndSchemas(def: Declared): void {
  const issues = keyLimitIssues(def)
  if (def.schemaVersion !== undefined && !isVersion(def.schemaVersion)) issues.push(`schemaVersion must be an integer in [1, ${MAX_SCHEMA_VERSION}] (got ${String(def.schemaVersion)})`)
  const supported = def.supportedSchemaVersions
  if (supported !== undefined) {
    if (!Array.isArray(supported) || supported.length === 0 || !supported.every(isVersion)) {
      issues.push(`supportedSchemaVersions must be a non-empty array of integers in [1, ${MAX_SCHEMA_VERSION}]`)
    } else if (!supported.includes(def.schemaVersion ?? 1)) {
      issues.push(`supportedSchemaVersions [${supported.join(', ')}] must include schemaVersion ${def.schemaVersion ?? 1} (the version this node speaks)`)
    }
  }
  for (const [name, list] of [
    ['readOnly', def.readOnly],
    ['interleave', def.interleave],
  ] as const) {
    if (list === undefined) continue
    if (!Array.isArray(list)) issues.push(`${name} must be an array of method names`)
    else for (const m of list) if (typeof m !== 'string' || !Object.hasOwn(def.handlers, m)) issues.push(`${name} names ${JSON.stringify(m)}, which is not a handler`)
  }
  if (Array.isArray(def.readOnly) && Array.isArray(def.interleave)) {
    for (const m of def.interleave) if (def.readOnly.includes(m)) issues.push(`${JSON.stringify(m)} is both readOnly and interleave; pick one`)
  }
  if (def.callChainReentrancy !== undefined && typeof def.callChainReentrancy !== 'boolean') issues.push(`callChainReentrancy must be a boolean (got ${JSON.stringify(def.callChainReentrancy)})`)
  issues.push(...methodSchemasIssues(def))
  if (issues.length > 0) {
    throw new GrainClusterError('ERR_GRAIN_DEFINITION_INVALID', `grain kind ${def.kind}: ${issues.join('; ')}`, { kind: def.kind, issues })
  }
}

/** Limits with defaults filled in. */
export function resolveKeyLimits(def: Declared): KeyLimits {
  return Object.freeze({
    concurrencyLimit: def.concurrencyLimit ?? DEFAULT_CONCURRENCY_LIMIT,
    queueDepth: def.queueDepth ?? DEFAULT_QUEUE_DEPTH,
    queuePolicy: def.queuePolicy ?? DEFAULT_QUEUE_POLICY,
  })
}

/** Supported versions, ascending and unique, defaulting to [schemaVersion]. */
export function resolveSupportedVersions(def: Declared): readonly number[] {
  const own = def.schemaVersion ?? 1
  return Object.freeze([...new Set(def.supportedSchemaVersions ?? [own])].sort((a, b) => a - b))
}

/** "counter v1,v2" — for diagnostics that name both sides. */
export function describeVersions(kind: string, versions: readonly number[]): string {
  return `${kind} ${versions.length === 0 ? '(none)' : versions.map((v) => `v${v}`).join(',')}`
}
