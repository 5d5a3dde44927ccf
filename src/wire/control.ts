/**
 * Conventions that every thread of a node agrees on for frames on the rings.
 *
 * Threads are numbered for `reply_to`: 0 is the main thread, 1 + w is grain
 * worker w. A request's `reply_to` names the thread that waits for its reply;
 * the main thread routes replies by it, so a reply crosses at most two rings
 * (worker → main → worker) and is never re-encoded on the way.
 *
 * CONTROL frames (FLAGS.CONTROL) carry runtime traffic, not grain messages;
 * their `message_type` is one of CONTROL_TYPES and their payload is JSON.
 */

export const MAIN_THREAD = 0

export function threadOfWorker(worker: number): number {
  return worker + 1
}
export function workerOfThread(thread: number): number {
  return thread - 1
}

export const CONTROL_TYPES = {
  /** worker → main: a RuntimeEvent (JSON) for the EventStream. */
  EVENT: 1,
  /**
   * worker → main: a grain call addressed by PID. Payload: [u16 index]
   * [u16 text length][PID UTF-8][request envelope]. The worker numbers the
   * PIDs it addresses; the first request with an index carries the text,
   * later ones only the index (text length 0), which the main thread looks
   * up in the table it keeps per worker. The main thread routes the
   * envelope to the node the PID names (this one included).
   */
  PID_REQUEST: 2,
  /*
   * State hand-off (issue 5). Rare traffic, so payloads are encoded with the
   * node's payload codec (snapshots are arbitrary codec values); they ride
   * the rings rather than the MessagePort because UNTOMB must be ordered
   * before the grain message that follows it.
   */
  /** worker → main: { id, kind, key } — a hand-off kind is activating; fetch its ActivationRecord. */
  HANDOFF_REQUEST: 3,
  /** main → worker: { id, outcome: 'record' | 'none' | 'unavailable', version?, snapshot?, reason? } */
  HANDOFF_REPLY: 4,
  /**
   * main → worker: { id, kind?, key? } — release kind/key (or, without kind,
   * every hand-off activation): snapshot, deactivate, tombstone. With
   * { id, members, selfNodeId }: rebalance — release every activation whose
   * key another of `members` now owns (rendezvous).
   */
  RELEASE_REQUEST: 5,
  /** worker → main: { id, records: [{ kind, key, version, snapshot? }], tombed?: [kind, key][], more?: true } — in parts that fit the ring; the last has no `more`. */
  RELEASE_REPLY: 6,
  /** main → worker: { kind, key } — this node owns the key again: lift its tombstone. */
  UNTOMB: 7,
  /**
   * worker → main, flagged ASK (correlation id, reply_to): { pid, timeoutMs? }
   * from a grain's ctx.whenWritable(pid). The main thread answers with an
   * ordinary reply (empty payload) once the node may send to `pid`
   * (GrainNode.whenWritable), or an error reply. It rides the worker's ring
   * behind the grain's earlier calls, so those are accounted for first.
   */
  WRITABLE_REQUEST: 8,
  /**
   * worker → main: CallStatsReport (payload codec): the calls this worker's
   * grains made since its last report and the calls waiting per kind now
   * (runtime/call-stats.ts), about once a second while either changes.
   */
  CALL_STATS: 9,
  /**
   * worker → main, flagged ASK (correlation id, reply_to): a grain's
   * PubSub call (PubSubRequest: ctx.publish, ctx.subscribe,
   * ctx.unsubscribe). The main thread runs it on node.pubsub and answers
   * with its result (payload codec), or an error reply. It rides the
   * worker's ring behind the grain's earlier calls.
   */
  PUBSUB_REQUEST: 10,
} as const
/** What a PUBSUB_REQUEST carries. */
export type PubSubRequest =
  | { op: 'publish'; topic: string; payload: unknown }
  | { op: 'subscribe' | 'unsubscribe'; topic: string; kind: string; key: string; method: string }

export type ControlType = (typeof CONTROL_TYPES)[keyof typeof CONTROL_TYPES]

/** Longest grain key accepted, in UTF-16 code units. */
export const MAX_KEY_LENGTH = 1024
