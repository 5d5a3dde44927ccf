/**
 * Regression (found by test/cluster/membership.test.ts): ClusterCore starts
 * monitoring a new member with `monitor(id, now)` in the same heartbeat tick
 * that sends it the first `hb`; the `hb-ack` arrives about 1 ms later. That
 * interval measures the round trip, not the peer's heartbeat cadence, yet it
 * was recorded as an inter-arrival sample. With the test profile the history
 * of every freshly monitored member then held a ~1 ms sample next to the
 * 500 ms ones: mean ≈ 400 ms, σ ≈ 214 ms, and φ crossed the threshold after
 * ~3.0 s of silence instead of the documented 2.52 s (kill → Unreachable
 * measured 2.9–3.1 s between real processes, outside the profile's
 * 2.02–2.62 s window; the prod profile is hit the same way, for longer,
 * since its window keeps 1,000 samples).
 */

import { describe, expect, it } from 'vitest'
import { memberId, ClusterCore, type ClusterMessage } from '../../../../src/cluster/cluster-core.js'
import { FailureDetectorRegistry } from '../../../../src/cluster/failure-detector/detector-registry.js'
import { FAILURE_DETECTOR_PROFILES } from '../../../../src/cluster/failure-detector/profiles.js'

const s = FAILURE_DETECTOR_PROFILES.test

describe('FailureDetectorRegistry.monitor(): the stand-in first heartbeat is not an arrival', () => {
  it('the first real heartbeat after monitor() adds no interval sample', () => {
    const viaMonitor = new FailureDetectorRegistry(s)
    viaMonitor.monitor('a', 1_000)
    const plain = new FailureDetectorRegistry(s)
    // The same peer, answering 1 ms after each request, every 500 ms.
    for (let t = 1_001; t <= 4_001; t += 500) {
      viaMonitor.heartbeat('a', t)
      plain.heartbeat('a', t)
    }
    const h = viaMonitor.detectorOf('a')!.history
    expect(h.samples().filter((x) => x < 100)).toEqual([])
    expect(h.samples()).toEqual(plain.detectorOf('a')!.history.samples())
    // φ reaches the threshold after H + pause + y₈·σ = 2522.6 ms of silence (profiles.ts).
    expect(viaMonitor.detectorOf('a')!.silenceToSuspicionMs()).toBeCloseTo(2_522.6, 0)
  })

  it('a member that never answers is still detected from the monitor() time', () => {
    const r = new FailureDetectorRegistry(s)
    r.monitor('silent', 1_000)
    expect(r.check(1_000 + 2_600)).toEqual({ unreachable: [], reachable: [] })
    expect(r.check(1_000 + 2_700)).toEqual({ unreachable: ['silent'], reachable: [] })
  })

  it('through ClusterCore: a member answering every heartbeat at once is suspected after 2.52 s of silence', () => {
    // Two cores; A monitors B. Messages are delivered 1 ms after they are sent.
    const registry = new FailureDetectorRegistry(s)
    const noop = { monitor: () => {}, heartbeat: () => {}, remove: () => {}, check: () => ({ unreachable: [], reachable: [] }), onLocalPause: () => {} }
    const a = new ClusterCore({
      authority: 'a:1',
      nodeId: 'A',
      seeds: ['a:1'],
      downAfterUnreachableMs: s.downAfterUnreachableMs,
      random: () => 0.5,
      detector: {
        monitor: (id, now) => void registry.monitor(id, now),
        heartbeat: (id, now) => void registry.heartbeat(id, now),
        remove: (id) => void registry.remove(id),
        check: (now) => registry.check(now),
        onLocalPause: () => {},
      },
    })
    const b = new ClusterCore({ authority: 'b:1', nodeId: 'B', seeds: ['a:1'], downAfterUnreachableMs: s.downAfterUnreachableMs, random: () => 0.5, detector: noop })
    const cores = new Map([
      ['a:1', a],
      ['b:1', b],
    ])
    let queue: Array<{ at: number; from: string; to: string; msg: ClusterMessage }> = []
    const pump = (now: number): void => {
      for (const [from, c] of cores) for (const x of c.drain().sends) queue.push({ at: now + 1, from, to: x.to, msg: x.msg })
    }
    const deliverUntil = (now: number): void => {
      for (;;) {
        const due = queue.filter((q) => q.at <= now).sort((x, y) => x.at - y.at)
        if (due.length === 0) return
        queue = queue.filter((q) => q.at > now)
        for (const q of due) {
          cores.get(q.to)!.onMessage(q.from, q.msg, q.at)
          pump(q.at)
        }
      }
    }
    a.selfJoin()
    b.requestJoin('a:1')
    pump(0)
    for (let t = 0; t <= 6_000; t += 100) {
      deliverUntil(t)
      if (t % 200 === 0) for (const c of cores.values()) c.tick(t)
      if (t % 500 === 0) for (const c of cores.values()) c.heartbeatTick(t)
      pump(t)
      deliverUntil(t + 2)
    }
    const id = memberId('b:1', 'B')
    expect(a.table.member('b:1')?.status).toBe('up')
    expect(registry.has(id)).toBe(true)
    const history = registry.detectorOf(id)!.history.samples()
    expect(history.filter((x) => x < 100)).toEqual([])
    expect(registry.detectorOf(id)!.silenceToSuspicionMs()).toBeCloseTo(2_522.6, 0)
  })
})
