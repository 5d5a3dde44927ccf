/**
 * The sample grain: a counter per key. `graincluster quickstart` loads this
 * module; copy it to start your own grain kind.
 */
import { defineGrain } from '../src/index.js'

export const Counter = defineGrain({
  kind: 'counter',
  state: () => ({ count: 0 }),
  // What HTTP and WebSocket callers may send (checked by the front before the call; see /openapi.json).
  payloadSchemas: { add: { type: 'integer' } },
  // What they get back (the fronts write results with these; see /openapi.json).
  resultSchemas: {
    add: { type: 'integer' },
    get: { type: 'integer' },
    whereAmI: { type: 'object', properties: { kind: { type: 'string' }, key: { type: 'string' }, threadId: { type: 'integer' }, processId: { type: 'integer' } }, required: ['kind', 'key', 'threadId', 'processId'] },
  },
  handlers: {
    add(ctx, by: number) {
      ctx.state.count += by
      return ctx.state.count
    },
    get(ctx) {
      return ctx.state.count
    },
    async whereAmI(ctx) {
      const { threadId } = await import('node:worker_threads')
      // Worker threads share their node's process id: it names the node that answered.
      return { kind: ctx.kind, key: ctx.key, threadId, processId: process.pid }
    },
  },
})
