/**
 * Optional bearer token for the RPC routes (/rpc, /ws and their
 * description, /openapi.json). Health, metrics
 * and membership stay open: probes and scrapers on the same host should not
 * need the secret that lets a caller drive grains.
 */

import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GrainClusterError } from '../common/errors.js'

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest()

/**
 * An onRequest hook that accepts `Authorization: Bearer <token>`. Both sides
 * are hashed first so timingSafeEqual compares equal lengths and the time
 * taken says nothing about the token's length or prefix.
 */
export function bearerAuth(token: string): (req: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const expected = digest(token)
  return async (req) => {
    const h = req.headers.authorization
    const m = typeof h === 'string' ? /^Bearer[ ]+(\S+)\s*$/i.exec(h) : null
    if (m === null) throw new GrainClusterError('ERR_RPC_UNAUTHORIZED', 'missing bearer token: send Authorization: Bearer <token>', {})
    if (!timingSafeEqual(digest(m[1]!), expected)) throw new GrainClusterError('ERR_RPC_UNAUTHORIZED', 'invalid bearer token', {})
  }
}
