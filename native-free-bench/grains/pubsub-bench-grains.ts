/**
 * Grain kind of the pubsub scope. Every grain worker imports this module;
 * the main thread imports it for the typed definition only.
 */

import { defineGrain } from '../../src/index.js'

export interface SinkStats {
  /** Messages received. */
  count: number
  /** Sequence number of the last one (-1 before the first). */
  last: number
  /** Messages whose sequence number was not above the previous one's (duplicates or reordering). */
  disorder: number
}

/**
 * A subscriber that counts: `recv(seq)` is the subscribed method (delivered
 * by PubSub, or called by hand with the same tell or ask), `stats` the
 * verification ask. The publisher numbers its messages in sending order, so
 * a grain that sees a number at or below the previous one saw a duplicate
 * or a reordering.
 */
export const PubSubSink = defineGrain({
  kind: 'bench-pubsub-sink',
  state: (): SinkStats => ({ count: 0, last: -1, disorder: 0 }),
  handlers: {
    recv(ctx, seq: number) {
      const s = ctx.state
      s.count++
      if (seq <= s.last) s.disorder++
      s.last = seq
    },
    stats(ctx): SinkStats {
      return { ...ctx.state }
    },
  },
})
