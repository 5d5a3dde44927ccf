/**
 * PubSub over HTTP (spec 9), for clients outside the cluster:
 *
 *   GET    /pubsub/topics                                   topics with settings and subscribers
 *   PUT    /pubsub/:topic                                   create (body: topic options, may be empty)
 *   DELETE /pubsub/:topic                                   delete
 *   POST   /pubsub/:topic/subscriptions                     subscribe (body: { kind, key, method })
 *   DELETE /pubsub/:topic/subscriptions/:kind/:key/:method  unsubscribe
 *   POST   /pubsub/:topic/publish                           publish (body: the JSON payload) → the PublishResult
 *
 * Behind the same bearer token as /rpc. Failures are the node's typed
 * errors: ERR_PUBSUB_TOPIC_NOT_FOUND 404, ERR_PUBSUB_NO_SUBSCRIBERS 409,
 * ERR_PUBSUB_INVALID 400, ERR_PUBSUB_TOPIC_CONFLICT 409.
 */

import type { FastifyInstance } from 'fastify'
import { GrainClusterError } from '../../common/errors.js'
import type { FrontNode, FrontPubSub } from '../front-node.js'
import { ERROR_BODY_SCHEMA } from '../http-errors.js'
import { KIND_PATTERN, MAX_KEY_LENGTH, MAX_METHOD_LENGTH } from './call-target.js'
import { usePayloadParser } from './rpc.js'

const TOPIC = { type: 'string', minLength: 1, maxLength: 128 } as const
const ERRORS = { '4xx': ERROR_BODY_SCHEMA, '5xx': ERROR_BODY_SCHEMA } as const
const SUBSCRIBER = {
  type: 'object',
  properties: { kind: { type: 'string', pattern: KIND_PATTERN }, key: { type: 'string', minLength: 1, maxLength: MAX_KEY_LENGTH }, method: { type: 'string', minLength: 1, maxLength: MAX_METHOD_LENGTH } },
  required: ['kind', 'key', 'method'],
  additionalProperties: false,
} as const

interface TopicRoute {
  Params: { topic: string }
}

function pubsubOf(node: FrontNode): FrontPubSub {
  if (node.pubsub === undefined) throw new GrainClusterError('ERR_PUBSUB_INVALID', 'this node offers no PubSub')
  return node.pubsub
}

export function pubsubRoutes(node: FrontNode): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    usePayloadParser(app)
    const topicParams = { type: 'object', properties: { topic: TOPIC }, required: ['topic'] } as const

    app.get('/pubsub/topics', async () => ({ topics: pubsubOf(node).topics() }))

    app.put<TopicRoute & { Body: Record<string, unknown> | undefined }>('/pubsub/:topic', { schema: { params: topicParams, response: ERRORS } }, async (req) => {
      const body = req.body
      if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) throw new GrainClusterError('ERR_PUBSUB_INVALID', 'the body of PUT /pubsub/:topic is the topic options object (or empty)', { topic: req.params.topic })
      return { topic: req.params.topic, settings: pubsubOf(node).createTopic(req.params.topic, body) }
    })

    app.delete<TopicRoute>('/pubsub/:topic', { schema: { params: topicParams, response: ERRORS } }, async (req) => {
      if (!pubsubOf(node).deleteTopic(req.params.topic)) throw new GrainClusterError('ERR_PUBSUB_TOPIC_NOT_FOUND', `topic ${req.params.topic} does not exist`, { topic: req.params.topic })
      return { deleted: req.params.topic }
    })

    app.post<TopicRoute & { Body: { kind: string; key: string; method: string } }>('/pubsub/:topic/subscriptions', { schema: { params: topicParams, body: SUBSCRIBER, response: ERRORS } }, async (req) => {
      pubsubOf(node).subscribe(req.params.topic, req.body)
      return { topic: req.params.topic, subscriber: req.body }
    })

    app.delete<{ Params: { topic: string; kind: string; key: string; method: string } }>(
      '/pubsub/:topic/subscriptions/:kind/:key/:method',
      { schema: { params: { type: 'object', properties: { topic: TOPIC, ...SUBSCRIBER.properties }, required: ['topic', 'kind', 'key', 'method'] }, response: ERRORS } },
      async (req) => {
        const { topic, kind, key, method } = req.params
        return { topic, unsubscribed: pubsubOf(node).unsubscribe(topic, { kind, key, method }) }
      },
    )

    app.post<TopicRoute & { Body: unknown }>('/pubsub/:topic/publish', { schema: { params: topicParams, response: ERRORS } }, async (req) => pubsubOf(node).publish(req.params.topic, req.body))
  }
}
