/**
 * Probes and membership:
 *   GET /healthz, /livez   200 while the process serves HTTP (liveness)
 *   GET /readyz            200 when this node should get traffic, else 503 with the reasons
 *   GET /cluster/members   the membership as this node sees it (clustered nodes only)
 *
 * Ready means: every grain worker is running (a crashed one is restarting),
 * the node is not closed, and, in a cluster, this member is Up and not on
 * the minority side of a partition.
 */

import type { FastifyInstance } from 'fastify'
import type { FrontNode } from '../front-node.js'

/** Worker liveness from the node's events: nothing here reaches into the worker host. */
class WorkerWatch {
  readonly #down = new Set<number>()
  #stopped: string | undefined
  readonly #offs: (() => void)[]

  constructor(node: FrontNode) {
    this.#offs = [
      node.events.subscribe('worker.crashed', (e) => {
        if (e.type === 'worker.crashed') this.#down.add(e.worker)
      }),
      node.events.subscribe('worker.started', (e) => {
        if (e.type === 'worker.started') this.#down.delete(e.worker)
      }),
      node.events.subscribe('node.stopped', (e) => {
        if (e.type === 'node.stopped') this.#stopped = e.reason
      }),
    ]
  }

  reasons(): string[] {
    const out: string[] = []
    if (this.#stopped !== undefined) out.push(`node stopped: ${this.#stopped}`)
    if (this.#down.size > 0) out.push(`worker(s) ${[...this.#down].sort((a, b) => a - b).join(', ')} down (restarting)`)
    return out
  }

  close(): void {
    for (const off of this.#offs) off()
  }
}

export function healthRoutes(node: FrontNode): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    const watch = new WorkerWatch(node)
    app.addHook('onClose', async () => watch.close())

    const alive = async (): Promise<{ status: 'ok' }> => ({ status: 'ok' })
    app.get('/healthz', alive)
    app.get('/livez', alive)

    app.get('/readyz', async (_req, reply) => {
      const reasons = watch.reasons()
      const c = node.cluster
      if (c !== undefined) {
        if (!c.core.isUp) reasons.push(`member ${c.authority} is not Up yet`)
        if (c.core.isMinority) reasons.push(`member ${c.authority} is on the minority side of a partition`)
      }
      if (reasons.length > 0) return reply.code(503).send({ status: 'not-ready', reasons })
      return { status: 'ready', reasons }
    })

    const cluster = node.cluster
    if (cluster !== undefined) {
      app.get('/cluster/members', async () => {
        const unreachable = cluster.core.unreachableSet()
        return {
          self: cluster.authority,
          members: cluster.core.members().map((m) => ({ authority: m.authority, nodeId: m.nodeId, status: m.status, reachable: !unreachable.has(m.authority) })),
        }
      })
    }
  }
}
