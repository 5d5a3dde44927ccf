/**
 * A grain node inside an existing Fastify app: the app keeps its own routes
 * and calls grains with `node.ask`; the standard front (/rpc, /ws, /metrics,
 * /healthz, /readyz) runs next to it on its own port.
 *
 * Settings come from the same place as `graincluster node`: GRAINCLUSTER_*
 * env vars and an optional file (GRAINCLUSTER_CONFIG), validated at start.
 * Two terminals, from the repository root:
 *
 *   GRAINCLUSTER_CONFIG=examples/graincluster.config.json GRAINCLUSTER_SECRET=change-me-please \
 *     APP_PORT=3000 npx tsx examples/embed-in-fastify.ts
 *   GRAINCLUSTER_CONFIG=examples/graincluster.config.json GRAINCLUSTER_SECRET=change-me-please \
 *     GRAINCLUSTER_PORT=4051 GRAINCLUSTER_HTTP_PORT=8081 APP_PORT=3001 npx tsx examples/embed-in-fastify.ts
 *
 *   curl -X POST localhost:3000/counters/apples/add -H 'content-type: application/json' -d '{"by":2}'
 *   curl localhost:3001/counters/apples        # same grain, whichever node owns it
 */
import Fastify from 'fastify'
import { GrainNode, redactedConfig, resolveConfig, startFront, toGrainNodeOptions } from '../src/index.js'
import { Counter } from './counter-grain.js'

const config = resolveConfig() // throws ERR_CONFIG_MISSING / ERR_CONFIG_INVALID naming every problem
const node = await GrainNode.start(toGrainNodeOptions(config))
await node.cluster!.whenUp()

const app = Fastify({ logger: true })
app.log.info({ config: redactedConfig(config) }, 'grain node up')

// Your own routes: ask grains by key; placement finds the owner node.
app.get<{ Params: { key: string } }>('/counters/:key', async (req) => ({
  key: req.params.key,
  count: await node.ask(Counter, req.params.key, 'get'),
  pid: node.placementOf(Counter.kind, req.params.key),
}))
app.post<{ Params: { key: string }; Body: { by?: number } }>('/counters/:key/add', async (req) => ({
  key: req.params.key,
  count: await node.ask(Counter, req.params.key, 'add', req.body?.by ?? 1),
}))

// The standard front, on the port the config names.
const front = config.http.enabled ? await startFront(node, { host: config.http.host, port: config.http.port, bodyLimitBytes: config.http.bodyLimitBytes, ...(config.http.token === undefined ? {} : { token: config.http.token }) }) : undefined

// Stop in order: no new requests, then leave the cluster (hands keys to the others).
app.addHook('onClose', async () => {
  await front?.close()
  await node.leave()
})
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void app.close())

await app.listen({ host: '127.0.0.1', port: Number(process.env.APP_PORT ?? 3000) })
app.log.info(`app on :${process.env.APP_PORT ?? 3000}${front === undefined ? '' : `, front on ${front.url}`}`)
