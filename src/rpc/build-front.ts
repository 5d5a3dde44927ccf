/**
 * The HTTP and WebSocket front of a node (main thread):
 *
 *   POST /rpc/:kind/:key/:method   one grain call, JSON body = payload → { result }
 *   GET  /ws                       multiplexed calls with correlation ids
 *   /pubsub/...                    topics, subscriptions and publish (routes/pubsub.ts)
 *   GET  /openapi.json             OpenAPI 3.1 description of the calls
 *   GET  /metrics                  Prometheus text (404 diagnostic when metrics are off)
 *   GET  /dashboard                a page that scrapes /metrics, /readyz and /cluster/members
 *   GET  /healthz, /livez, /readyz probes
 *   GET  /cluster/members          membership (clustered nodes only)
 *
 * Calls go through `node.ask`, the same placement path as in-process
 * callers. buildFront returns the app and never listens (tests use
 * app.inject); startFront binds it, to loopback unless told otherwise.
 */

import websocket from '@fastify/websocket'
import Fastify, { type FastifyInstance } from 'fastify'
import { GrainClusterError } from '../common/errors.js'
import { MAX_KEY_LENGTH } from '../wire/control.js'
import { bearerAuth } from './bearer-auth.js'
import type { FrontNode } from './front-node.js'
import { frameworkErrors, installErrorHandler } from './http-errors.js'
import { dashboardRoutes } from './routes/dashboard.js'
import { healthRoutes } from './routes/health.js'
import { metricsRoutes } from './routes/metrics.js'
import { openApiRoutes } from './routes/openapi.js'
import { ResultSerializers } from './routes/result-schemas.js'
import { pubsubRoutes } from './routes/pubsub.js'
import { rpcRoutes } from './routes/rpc.js'
import { wsRoutes } from './routes/ws.js'

export type { FrontNode } from './front-node.js'

export const DEFAULT_FRONT_HOST = '127.0.0.1'
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024 // 1 MiB
export const DEFAULT_WS_MAX_PAYLOAD_BYTES = 1024 * 1024 // 1 MiB
export const DEFAULT_WS_MAX_IN_FLIGHT = 1_024
export const DEFAULT_WS_MAX_BUFFERED_BYTES = 16 * 1024 * 1024 // 16 MiB

export interface FrontOptions {
  /** Interface to bind (startFront). Default '127.0.0.1': exposing the front is an explicit choice. */
  host?: string
  /** Port to bind (startFront); 0 picks a free one. Default 0. */
  port?: number
  /** When set, /rpc and /ws require `Authorization: Bearer <token>` (else 401 ERR_RPC_UNAUTHORIZED). Probes and /metrics stay open. */
  token?: string
  /** Largest request body (bytes); beyond, 413 ERR_RPC_BODY_TOO_LARGE. Default 1 MiB. */
  bodyLimitBytes?: number
  /** Largest WebSocket frame (bytes); beyond, the connection closes with 1009. Default 1 MiB. */
  wsMaxPayloadBytes?: number
  /** Calls one WebSocket may have in flight; beyond, ERR_RPC_TOO_MANY_IN_FLIGHT. Default 1,024. */
  wsMaxInFlight?: number
  /** Unsent reply bytes on one WebSocket above which new calls are refused the same way. Default 16 MiB. */
  wsMaxBufferedBytes?: number
  /** Fastify's request logger (pino). Default false. */
  logger?: boolean
}

export interface RunningFront {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  readonly url: string
  readonly app: FastifyInstance
  /** Stop listening and close open connections (the node stays up). */
  close(): Promise<void>
}

function positiveInt(issues: string[], name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt
  if (!Number.isInteger(v) || v < 1) issues.push(`${name} must be a positive integer (got ${String(v)})`)
  return v
}

/** Build the front for `node`; the returned app is not listening. Options are validated in one pass (ERR_CONFIG_INVALID). */
export function buildFront(node: FrontNode, options: FrontOptions = {}): FastifyInstance {
  const issues: string[] = []
  const bodyLimitBytes = positiveInt(issues, 'bodyLimitBytes', options.bodyLimitBytes, DEFAULT_BODY_LIMIT_BYTES)
  const maxPayload = positiveInt(issues, 'wsMaxPayloadBytes', options.wsMaxPayloadBytes, DEFAULT_WS_MAX_PAYLOAD_BYTES)
  const maxInFlight = positiveInt(issues, 'wsMaxInFlight', options.wsMaxInFlight, DEFAULT_WS_MAX_IN_FLIGHT)
  const maxBufferedBytes = positiveInt(issues, 'wsMaxBufferedBytes', options.wsMaxBufferedBytes, DEFAULT_WS_MAX_BUFFERED_BYTES)
  if (options.token !== undefined && (typeof options.token !== 'string' || options.token.length === 0)) issues.push('token must be a non-empty string')
  if (issues.length > 0) throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid front options: ${issues.join('; ')}`, { issues })

  // Compiled before the app exists: a result schema that does not compile fails the build.
  const results = new ResultSerializers(node)
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: bodyLimitBytes,
    return503OnClosing: true,
    // A key of MAX_KEY_LENGTH characters, each up to 3 UTF-8 bytes percent-encoded (%XX): the router must not refuse it first.
    routerOptions: { maxParamLength: MAX_KEY_LENGTH * 9 },
    frameworkErrors,
  })
  installErrorHandler(app, bodyLimitBytes)
  void app.register(websocket, { options: { maxPayload } })
  void app.register(healthRoutes(node))
  void app.register(metricsRoutes(node))
  void app.register(dashboardRoutes())
  // One encapsulated context for the routes that drive grains, so the token hook covers exactly these.
  void app.register(async (calls) => {
    if (options.token !== undefined) calls.addHook('onRequest', bearerAuth(options.token))
    await calls.register(rpcRoutes(node, results))
    await calls.register(wsRoutes(node, results, { maxInFlight, maxBufferedBytes }))
    await calls.register(pubsubRoutes(node))
    await calls.register(openApiRoutes(node, options.token !== undefined))
  })
  return app
}

/** Build the front and listen; resolves once it accepts connections. */
export async function startFront(node: FrontNode, options: FrontOptions = {}): Promise<RunningFront> {
  const port = options.port ?? 0
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new GrainClusterError('ERR_CONFIG_INVALID', `invalid front options: port must be an integer in [0, 65535] (got ${String(port)})`, { issues: [`port must be an integer in [0, 65535] (got ${String(port)})`] })
  }
  const app = buildFront(node, options)
  const host = options.host ?? DEFAULT_FRONT_HOST
  try {
    await app.listen({ host, port })
  } catch (e) {
    await app.close()
    throw e
  }
  const addr = app.server.address()
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port
  const h = host.includes(':') ? `[${host}]` : host
  return { url: `http://${h}:${bound}`, app, close: () => app.close() }
}
