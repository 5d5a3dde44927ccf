/** GET /metrics — Prometheus text exposition of the node's registry. */

import type { FastifyInstance } from 'fastify'
import type { FrontNode } from '../front-node.js'

export function metricsRoutes(node: FrontNode): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    app.get('/metrics', async (_req, reply) => {
      // Rejects with ERR_RPC_METRICS_DISABLED (404 + the diagnostic body via the error handler)
      // when the node runs with metrics: false: a scraper sees "not collected", never a silent zero.
      const text = await node.metricsText()
      return reply.type(node.metricsContentType).send(text)
    })
  }
}
