/**
 * Inbound flow control over real loopback sockets: two GrainNodes in one
 * process, node B with a small ring and overflow bound, its worker blocked
 * while node A sends a burst of tells far larger than both.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { GrainNode, RuntimeEvent } from '../../src/index.js'
import { startPair } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]
/** B's overflow bound: it pauses at half (1,024 frames waiting) and reads again at an eighth. */
const OVERFLOW = 2_048
const TELLS = 20_000

async function pair(maxInboundPauseMs: number, controlLane = true): Promise<{ a: GrainNode; b: GrainNode; eventsB: RuntimeEvent[] }> {
  const [a, b] = await startPair(
    'flow-it',
    {
      grains: GRAINS,
      ringBytes: 1 << 14, // ~145 tells
      maxOverflowFrames: OVERFLOW,
      associations: { maxInboundPauseMs },
    },
    { controlLane },
  )
  const eventsB: RuntimeEvent[] = []
  b.events.subscribe('*', (e) => void eventsB.push(e))
  await waitUntil(() => a.resolve(b.pid('counter', 'probe')).status === 'ready', { what: 'b ready from a' })
  return { a, b, eventsB }
}

/** Block B's worker for `ms`, then send TELLS add(1) to `pid` in one synchronous burst (A's transport buffers them). */
async function burst(a: GrainNode, pid: string, ms: number): Promise<void> {
  expect(await a.askPid(pid, 'add', 0)).toBe(0) // activated, association warm
  a.tellPid(pid, 'block', ms)
  for (let i = 0; i < TELLS; i++) a.tellPid(pid, 'add', 1)
}

const ofType = <T extends RuntimeEvent['type']>(events: RuntimeEvent[], type: T) => events.filter((e): e is Extract<RuntimeEvent, { type: T }> => e.type === type)

describe('inbound flow control', () => {
  const nodes: GrainNode[] = []
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.close()))
  })

  it('stops reading a peer while its tells wait for a full ring, so a burst far over the bound arrives whole and in order', async () => {
    const { a, b, eventsB } = await pair(30_000)
    nodes.push(a, b)
    const pid = b.pid('counter', 'flow-burst')
    await burst(a, pid, 800)
    // Per-PID order: this ask queues behind every tell.
    expect(await a.askPid(pid, 'get', undefined, { timeoutMs: 60_000 })).toBe(TELLS)
    expect(ofType(eventsB, 'deadletter')).toEqual([])
    const paused = ofType(eventsB, 'transport.inbound-paused')
    expect(paused.length).toBeGreaterThan(0)
    expect(paused[0]).toMatchObject({ authority: a.cluster!.authority })
    expect(paused[0]!.backlog).toBeGreaterThanOrEqual(OVERFLOW / 2)
    await waitUntil(() => ofType(eventsB, 'transport.inbound-resumed').length === paused.length, { what: 'every pause ended' })
    expect(new Set(ofType(eventsB, 'transport.inbound-resumed').map((e) => e.cause))).toEqual(new Set(['drained']))
    const metrics = await b.metricsText()
    expect(metrics).toMatch(/graincluster_transport_inbound_pauses_total\{cause="drained"\} [1-9]/)
  })

  it("with the control lane, a pause outlasts maxInboundPauseMs: the peer's heartbeats are read meanwhile, and nothing is dead-lettered", async () => {
    const { a, b, eventsB } = await pair(100)
    nodes.push(a, b)
    await waitUntil(() => b.cluster!.transport.hasControlLane(a.cluster!.authority), { what: 'control lane up' })
    expect(await b.metricsText()).toMatch(/graincluster_transport_control_lane_changes_total\{to="up"\} 1\b/)
    const pid = b.pid('counter', 'flow-lane')
    await burst(a, pid, 2_500) // a worker stuck far longer than the pause limit, and than a heartbeat interval (500 ms)
    await waitUntil(() => ofType(eventsB, 'transport.inbound-paused').length > 0, { what: 'b paused reading a' })
    const paused = ofType(eventsB, 'transport.inbound-paused')[0]!
    expect(paused.reason).toMatch(/heartbeats go on over the control lane/)
    // While no resume has come, b still reads frames from a: the heartbeats on the control lane.
    const framesAtPause = b.cluster!.transport.stats.framesIn
    await waitUntil(() => b.cluster!.transport.stats.framesIn > framesAtPause, { what: 'frames read during the pause' })
    expect(ofType(eventsB, 'transport.inbound-resumed')).toEqual([])
    expect(await a.askPid(pid, 'get', undefined, { timeoutMs: 60_000 })).toBe(TELLS)
    expect(ofType(eventsB, 'deadletter')).toEqual([])
    const resumed = ofType(eventsB, 'transport.inbound-resumed')
    expect(new Set(resumed.map((e) => e.cause))).toEqual(new Set(['drained']))
    expect(Math.max(...resumed.map((e) => e.pausedMs))).toBeGreaterThan(100)
  })

  it('without the control lane it bounds a pause: past maxInboundPauseMs it reads on and dead-letters what does not fit, and nothing goes missing', async () => {
    const { a, b, eventsB } = await pair(100, false)
    nodes.push(a, b)
    const pid = b.pid('counter', 'flow-stuck')
    await burst(a, pid, 1_500) // a worker stuck far longer than the pause limit
    const deadOf = () => ofType(eventsB, 'deadletter').filter((e) => e.key === 'flow-stuck')
    // Every tell is either delivered or dead-lettered with a reason (an ask that meets the full ring fails, and is asked again).
    const count = await waitUntil(
      async () => {
        const n = await a.askPid<number>(pid, 'get', undefined, { timeoutMs: 60_000 })
        return n + deadOf().length === TELLS ? n : undefined
      },
      { timeoutMs: 60_000, intervalMs: 50, what: 'delivered + dead-lettered = sent' },
    )
    const resumed = ofType(eventsB, 'transport.inbound-resumed')
    expect(resumed.some((e) => e.cause === 'pause-limit' && e.pausedMs >= 100)).toBe(true)
    const dead = deadOf()
    expect(dead.length).toBeGreaterThan(0)
    expect(new Set(dead.map((e) => e.code))).toEqual(new Set(['ERR_RING_FULL']))
    expect(count).toBeGreaterThan(0)
    expect(a.cluster!.members().every((m) => m.status === 'up')).toBe(true)
  })
})
