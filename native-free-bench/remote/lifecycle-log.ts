/**
 * A bounded log of one node's connection and membership events, for the
 * remote scope's error messages: a tell count that comes up short is
 * explained (or not) by what the connections did meanwhile.
 */

import type { EventStream } from '../../src/observability/event-stream.js'
import type { RuntimeEvent } from '../../src/observability/events.js'

const KEEP = 30
/** Per-message or per-activation events: counted elsewhere, too many to log. */
const QUIET = new Set(['grain.activated', 'grain.deactivated', 'ring.full', 'ring.drained', 'transport.inbound-paused', 'transport.inbound-resumed', 'gossip.state', 'gossip.converged', 'deadletter'])

export interface LifecycleLog {
  /** The last events, oldest first, as "+ms type detail". */
  lines(): string[]
  stop(): void
}

export function lifecycleLog(events: EventStream, t0 = performance.now()): LifecycleLog {
  const lines: string[] = []
  const off = events.subscribe('*', (e: RuntimeEvent) => {
    if (QUIET.has(e.type)) return
    const { type, at: _at, category: _c, ...rest } = e
    lines.push(`+${Math.round(performance.now() - t0)}ms ${type} ${JSON.stringify(rest).slice(0, 200)}`)
    if (lines.length > KEEP) lines.shift()
  })
  return { lines: () => [...lines], stop: off }
}
