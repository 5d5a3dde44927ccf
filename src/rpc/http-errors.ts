/**
 * One mapping from anything thrown on the front to an HTTP reply: every
 * value goes through toGrainClusterError, the status is the code's
 * `ERROR_CODES[code].http`, and the body is always
 * `{ error: { code, reason, details } }`, so a client switches on `code`
 * and never parses Fastify's own error shapes.
 */

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ERROR_CODES, GrainClusterError, toGrainClusterError, type ErrorDetails } from '../common/errors.js'

/** Body of every error reply of the front (HTTP and WebSocket). */
export interface ErrorBody {
  error: { code: string; reason: string; details: ErrorDetails }
}

/** JSON schema of ErrorBody, for route response schemas. */
export const ERROR_BODY_SCHEMA = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, reason: { type: 'string' }, details: { type: 'object', additionalProperties: true } },
      required: ['code', 'reason', 'details'],
    },
  },
  required: ['error'],
} as const

function isFastifyError(u: unknown): u is FastifyError {
  return u instanceof Error && typeof (u as Partial<FastifyError>).code === 'string' && (u as Partial<FastifyError>).code!.startsWith('FST_')
}

/**
 * Normalise a value caught on the front. Fastify's own request errors
 * (body parsing, size, schema validation, media type) become ERR_RPC_*;
 * everything else is passed through toGrainClusterError unchanged.
 */
export function toFrontError(u: unknown, bodyLimitBytes?: number): GrainClusterError {
  if (GrainClusterError.is(u)) return u
  const e = u as Partial<FastifyError> & { validation?: { instancePath?: string; message?: string }[]; validationContext?: string }
  if (isFastifyError(u) || (u instanceof SyntaxError && e.statusCode === 400)) {
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return new GrainClusterError('ERR_RPC_BODY_TOO_LARGE', `request body exceeds the limit of ${bodyLimitBytes ?? 'the configured'} bytes`, bodyLimitBytes === undefined ? {} : { limit: bodyLimitBytes })
    }
    if (Array.isArray(e.validation)) {
      const where = e.validationContext ?? 'request'
      const issues = e.validation.map((v) => `${where}${v.instancePath ?? ''}: ${v.message ?? 'is invalid'}`)
      return new GrainClusterError('ERR_RPC_BAD_REQUEST', `invalid ${where}: ${issues.join('; ')}`, { issues }, { cause: u })
    }
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return new GrainClusterError('ERR_RPC_BAD_REQUEST', 'unsupported Content-Type: send the payload as application/json', {}, { cause: u })
    }
    if ((e.statusCode ?? 500) < 500) return toGrainClusterError(u, 'ERR_RPC_BAD_REQUEST')
  }
  return toGrainClusterError(u)
}

/** Status and body for an error; also what the WebSocket route sends (without the status). */
export function errorReply(e: GrainClusterError): { status: number; body: ErrorBody } {
  return { status: ERROR_CODES[e.code].http, body: { error: { code: e.code, reason: e.reason, details: e.details } } }
}

/** Install the one error handler on the root instance, before any route registers, so every child context inherits it. */
export function installErrorHandler(app: FastifyInstance, bodyLimitBytes: number): void {
  app.setErrorHandler((err, req, reply) => {
    const e = toFrontError(err, bodyLimitBytes)
    const { status, body } = errorReply(e)
    if (status >= 500) req.log.error({ err, code: e.code }, 'request failed')
    return reply.code(status).send(body)
  })
}

/** Fastify's `frameworkErrors` option: router failures (bad URL encoding, an over-long path parameter) before any route runs. */
export function frameworkErrors(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = errorReply(toGrainClusterError(err, 'ERR_RPC_BAD_REQUEST'))
  void reply.code(status).send(body)
}
