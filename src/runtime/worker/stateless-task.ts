/**
 * Piscina task module for stateless worker grains: no activation, no key
 * affinity, so any pool thread may run any call. Errors come back as data
 * (a WireError), because piscina structured-clones thrown errors and would
 * drop their code.
 */

import { toGrainClusterError, toWire, type WireError } from '../../common/errors.js'
import { GrainClusterError } from '../../common/errors.js'
import { KindRegistry } from '../../grains/kind-registry.js'

export interface StatelessTask {
  modules: string[]
  kind: string
  method: string
  payload: unknown
}

export type StatelessResult = { ok: true; value: unknown } | { ok: false; error: WireError }

let registry: Promise<KindRegistry> | undefined

export default async function runStatelessTask(task: StatelessTask): Promise<StatelessResult> {
  const details = { kind: task.kind, method: task.method }
  try {
    registry ??= KindRegistry.load(task.modules)
    const def = (await registry).stateless.get(task.kind)
    if (def === undefined) throw new GrainClusterError('ERR_GRAIN_UNKNOWN_KIND', `no stateless grain kind "${task.kind}"`, details)
    const fn = def.handlers[task.method]
    if (fn === undefined) throw new GrainClusterError('ERR_GRAIN_UNKNOWN_METHOD', `stateless grain ${task.kind} has no method "${task.method}"`, details)
    try {
      return { ok: true, value: await fn(task.payload) }
    } catch (e) {
      // Thrown by user code: the caller's retry policy must never resend it, whatever its code.
      const err = toGrainClusterError(e, 'ERR_GRAIN_HANDLER_FAILED', details)
      return { ok: false, error: toWire(new GrainClusterError(err.code, err.reason, { ...details, ...err.details, origin: 'grain' })) }
    }
  } catch (e) {
    return { ok: false, error: toWire(toGrainClusterError(e, 'ERR_GRAIN_HANDLER_FAILED', details)) }
  }
}
