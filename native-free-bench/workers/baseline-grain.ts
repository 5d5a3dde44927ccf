/**
 * e2e baseline: the bench counter's logic in a plain worker thread, driven
 * by postMessage with JSON text — what one writes without graincluster.
 * State per key lives in a Map of small objects, like activations, and the
 * handlers are looked up by method name for every message.
 *
 * Tells carry no id and get no reply; every ACK_EVERY processed tells the
 * worker posts { ack: processed }, the credit the sender uses to bound what
 * is in flight (graincluster bounds it with the ring and its overflow queue).
 */

import { parentPort } from 'node:worker_threads'
import { ACK_EVERY, type BaselineRequest, type BaselineResponse } from './baseline-grain-protocol.js'

const port = parentPort!
const states = new Map<string, { count: number }>()

type Handler = (s: { count: number }, payload: unknown) => unknown
const handlers: Record<string, Handler> = {
  inc(s, by) {
    s.count += by as number
    return undefined
  },
  add(s, by) {
    s.count += by as number
    return s.count
  },
  get(s) {
    return s.count
  },
}

let tells = 0

port.on('message', (text: string) => {
  const m = JSON.parse(text) as BaselineRequest
  let reply: BaselineResponse | undefined
  const h = m.kind === 'bench-counter' ? handlers[m.method] : undefined
  if (h === undefined) reply = m.id === undefined ? undefined : { id: m.id, error: `unknown ${m.kind}.${m.method}` }
  else {
    let s = states.get(m.key)
    if (s === undefined) states.set(m.key, (s = { count: 0 }))
    const result = h(s, m.payload)
    if (m.id !== undefined) reply = { id: m.id, result }
  }
  if (reply !== undefined) port.postMessage(JSON.stringify(reply))
  else if (++tells % ACK_EVERY === 0) port.postMessage(JSON.stringify({ ack: tells } satisfies BaselineResponse))
})

port.postMessage(JSON.stringify({ ack: 0 } satisfies BaselineResponse))
