/**
 * Checks shared by the HTTP and WebSocket RPC routes: the same kind pattern
 * and key bound as the runtime, and a kind/method lookup before the call so
 * an unknown name fails fast with its typed 404 instead of a dead letter.
 */

import { GrainClusterError } from '../../common/errors.js'
import { MAX_KEY_LENGTH } from '../../wire/control.js'
import type { FrontNode } from '../front-node.js'

/** The grain kind pattern of defineGrain (src/grains/define-grain.ts). */
export const KIND_PATTERN = '^[A-Za-z][A-Za-z0-9_.-]{0,63}$'
const KIND_RE = new RegExp(KIND_PATTERN)
export { MAX_KEY_LENGTH }
/** Longest method name accepted from a client; handler names are identifiers. */
export const MAX_METHOD_LENGTH = 256
/** Upper bound of a client-chosen timeout (ms): 24 h, as the node's askTimeoutMs. */
export const MAX_TIMEOUT_MS = 24 * 3_600_000

/** Throws ERR_GRAIN_UNKNOWN_KIND / ERR_GRAIN_UNKNOWN_METHOD when the node does not serve kind.method. */
export function checkTarget(node: FrontNode, kind: string, key: string, method: string): void {
  const info = node.kinds.get(kind)
  if (info === undefined) throw new GrainClusterError('ERR_GRAIN_UNKNOWN_KIND', `no grain kind "${kind}" is registered on this node`, { kind, key, method })
  if (!info.methods.has(method)) throw new GrainClusterError('ERR_GRAIN_UNKNOWN_METHOD', `grain kind "${kind}" has no method "${method}"`, { kind, key, method })
}

/** Validate an untrusted call (WebSocket frames); returns the list of problems, empty when valid. */
export function callIssues(kind: unknown, key: unknown, method: unknown, timeoutMs: unknown): string[] {
  const issues: string[] = []
  if (typeof kind !== 'string' || !KIND_RE.test(kind)) issues.push(`kind must be a string matching ${KIND_PATTERN}`)
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) issues.push(`key must be a string of 1 to ${MAX_KEY_LENGTH} characters`)
  if (typeof method !== 'string' || method.length === 0 || method.length > MAX_METHOD_LENGTH) issues.push(`method must be a string of 1 to ${MAX_METHOD_LENGTH} characters`)
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || (timeoutMs as number) < 1 || (timeoutMs as number) > MAX_TIMEOUT_MS)) {
    issues.push(`timeoutMs must be an integer in [1, ${MAX_TIMEOUT_MS}]`)
  }
  return issues
}
