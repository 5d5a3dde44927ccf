/**
 * flood scope (on demand only: `--scope flood`; ~40 s, so not in `all` or
 * the smoke test): a grain far slower than its sender, over one loopback
 * association, with and without the control lane.
 *
 * Two GrainNodes in this process (test/helpers/in-process-cluster.ts), all
 * defaults except the lane. A streams tells at B's counter with sender-side
 * flow control (node.isWritable / whenWritable every 8,192 tells, as the
 * remote scope's (a) does); after every 100 `add`s it sends a 5 ms `block`,
 * so the grain takes ~20,000 messages/s, a fifth of what inbound flow control
 * could hold within one maxInboundPauseMs (250 ms) before the control lane.
 * Counted on B: dead letters, and how each inbound pause ended. With the
 * lane, a pause lasts until B's backlog drains and A follows the grain's
 * pace; without it (cluster.controlLane: false, the only mode before
 * 2026-12-01) every pause ends at the limit and B dead-letters what does
 * not fit.
 */

import type { GrainNode, RuntimeEvent } from '../src/index.js'
import { startPair } from '../test/helpers/in-process-cluster.js'
import { check, type BenchOptions, type Row, type ScopeResult } from './lib/report.js'

const GRAINS = [new URL('../test/fixtures/grains/test-grains.ts', import.meta.url)]
const BLOCK_EVERY = 100
const BLOCK_MS = 5
const FLOW_EVERY = 8_192

interface FloodRun {
  sent: number
  delivered: number
  deadOnB: number
  seconds: number
  resumes: Record<string, number>
  membersUp: boolean
}

async function flood(controlLane: boolean, tells: number): Promise<FloodRun> {
  const [a, b] = await startPair(`bench-flood-${controlLane ? 'lane' : 'nolane'}`, { grains: GRAINS }, { controlLane })
  try {
    const dead: RuntimeEvent[] = []
    const resumes: Record<string, number> = {}
    b.events.subscribe('*', (e) => {
      if (e.type === 'deadletter') dead.push(e)
      else if (e.type === 'transport.inbound-resumed') resumes[e.cause] = (resumes[e.cause] ?? 0) + 1
    })
    const pid = b.pid('counter', 'slow')
    await a.askPid(pid, 'add', 0) // activated, association warm
    const t0 = performance.now()
    const sent = await stream(a, pid, tells)
    const delivered = await a.askPid<number>(pid, 'get', undefined, { timeoutMs: 300_000 })
    const seconds = (performance.now() - t0) / 1000
    return { sent, delivered, deadOnB: dead.length, seconds, resumes, membersUp: a.cluster!.members().every((m) => m.status === 'up') }
  } finally {
    await Promise.all([a.close(), b.close()])
  }
}

async function stream(a: GrainNode, pid: string, tells: number): Promise<number> {
  let sent = 0
  while (sent < tells) {
    for (let i = 0; i < FLOW_EVERY && sent < tells; i++, sent++) {
      a.tellPid(pid, 'add', 1)
      if (sent % BLOCK_EVERY === BLOCK_EVERY - 1) a.tellPid(pid, 'block', BLOCK_MS)
    }
    await new Promise((r) => setImmediate(r))
    if (!a.isWritable(pid)) await a.whenWritable(pid, { timeoutMs: 300_000 })
  }
  return sent
}

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const tells = o.quick ? 80_000 : 400_000
  const rows: Row[] = []
  const runs: FloodRun[] = []
  for (const lane of [true, false]) {
    o.log(`flood: ${tells.toLocaleString('en-US')} tells at a ~20k msgs/s grain, control lane ${lane ? 'on' : 'off'}`)
    const r = await flood(lane, tells)
    runs.push(r)
    rows.push({
      case: lane ? 'control lane (default)' : 'controlLane: false [baseline: before 2026-12-01]',
      'tells sent': r.sent,
      delivered: r.delivered,
      'dead letters on B': r.deadOnB,
      'delivered msgs/s': r.delivered / r.seconds,
      'pauses ended: drained': r.resumes.drained ?? 0,
      'pauses ended: pause-limit': r.resumes['pause-limit'] ?? 0,
      'members up': r.membersUp ? 'yes' : 'NO',
    })
  }
  const [lane, none] = runs as [FloodRun, FloodRun]
  return {
    scope: 'flood',
    title: 'a slow grain under a flood (sender-side flow control on): with and without the control lane',
    method: `hand timing; two GrainNodes in this process on 127.0.0.1, defaults but the lane; A tells B's counter with isWritable/whenWritable every ${FLOW_EVERY.toLocaleString('en-US')} tells and a ${BLOCK_MS} ms block every ${BLOCK_EVERY} adds (~20k msgs/s); delivered = B's count, asked once A has sent all; time = first tell to that answer`,
    baseline: 'controlLane: false (heartbeats on the data connection, inbound pauses bounded by maxInboundPauseMs 250 ms)',
    params: { tells, blockEvery: BLOCK_EVERY, blockMs: BLOCK_MS, flowEvery: FLOW_EVERY },
    rows,
    targets: [
      check('every tell delivered, with the control lane', `= ${tells.toLocaleString('en-US')}`, lane.delivered, 'tells', lane.delivered === tells && lane.deadOnB === 0),
      check('members stay up, with the control lane', 'all up', lane.membersUp ? 1 : 0, '', lane.membersUp),
    ],
    notes: [
      `Without the lane ${none.deadOnB.toLocaleString('en-US')} messages were dead-lettered on B (ERR_RING_FULL) and ${(tells - none.delivered).toLocaleString('en-US')} of the ${tells.toLocaleString('en-US')} adds never counted: a pause may last only maxInboundPauseMs, because the heartbeats wait behind the data, and the grain cannot drain 3/8 of maxOverflowFrames in that time.`,
    ],
    startedAt,
    durationMs: performance.now() - t0,
  }
}
