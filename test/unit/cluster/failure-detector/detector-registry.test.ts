import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FailureDetectorRegistry } from '../../../../src/cluster/failure-detector/detector-registry.js'
import { LocalHealth } from '../../../../src/cluster/failure-detector/local-health.js'
import { FAILURE_DETECTOR_PROFILES } from '../../../../src/cluster/failure-detector/profiles.js'
import type { FailureDetectorProfileName, FailureDetectorSettings } from '../../../../src/cluster/failure-detector/profiles.js'
import { seededRng } from '../../../helpers/seeded-rng.js'

/*
 * A small deterministic simulation of the driver: peers send heartbeats on
 * jittery timers over a jittery network; this node ticks LocalHealth and
 * runs registry.check every checkIntervalMs. A stall of this node
 * ([from, to)) delays every timer and every delivery to its end; `order`
 * says whether the buffered heartbeats are processed before the overdue
 * tick ('io-first': libuv can do this after a SIGSTOP; the danger is
 * poisoned histories) or after it ('timer-first': the danger is accusing
 * everyone). Local-health tests run both.
 */

type Window = readonly [fromMs: number, toMs: number]

interface PeerPlan {
  readonly id: string
  /** The peer stops sending at this time (kill -9). */
  readonly killAtMs?: number
  /** The peer starts sending again at this time (a new heartbeat stream). */
  readonly resumeAtMs?: number
  /** The peer's own stalls (SIGSTOP): its timer fires once at the end. */
  readonly stalls?: readonly Window[]
}

interface Transition {
  readonly atMs: number
  readonly id: string
  readonly to: 'unreachable' | 'reachable'
}

interface SimOptions {
  readonly settings: FailureDetectorSettings
  readonly peers: readonly PeerPlan[]
  readonly untilMs: number
  readonly seed: number
  /** This node's stalls. */
  readonly localStalls?: readonly Window[]
  /** false: the driver ignores local health (the control case). */
  readonly localHealth?: boolean
  /** What runs first when this node resumes from a stall (default 'io-first'). */
  readonly order?: Order
}

type Order = 'io-first' | 'timer-first'
const orders: readonly Order[] = ['io-first', 'timer-first']

function inWindow(t: number, windows: readonly Window[] | undefined): Window | undefined {
  return windows?.find(([from, to]) => t >= from && t < to)
}

/** Arrival times at this node of one peer's heartbeats. */
function arrivalsOf(peer: PeerPlan, settings: FailureDetectorSettings, untilMs: number, rng: () => number): number[] {
  const out: number[] = []
  const send = (t: number): void => {
    out.push(t + 0.2 + rng() * 5) // network: 0.2–5.2 ms
  }
  let t = rng() * settings.heartbeatIntervalMs
  while (t < untilMs) {
    const stall = inWindow(t, peer.stalls)
    if (stall !== undefined) t = stall[1]
    const killed = peer.killAtMs !== undefined && t >= peer.killAtMs && (peer.resumeAtMs === undefined || t < peer.resumeAtMs)
    if (killed) {
      if (peer.resumeAtMs === undefined) break
      t = peer.resumeAtMs
      continue
    }
    send(t)
    t += settings.heartbeatIntervalMs + rng() * 20 // sender timer lag 0–20 ms
  }
  return out
}

function simulate(o: SimOptions): { registry: FailureDetectorRegistry; transitions: Transition[]; localHealth: LocalHealth } {
  const rng = seededRng(o.seed)
  const s = o.settings
  const registry = new FailureDetectorRegistry(s)
  const localHealth = new LocalHealth({ lagThresholdMs: s.localPauseThresholdMs, graceMs: s.localPauseGraceMs })
  const [ioDelay, timerDelay] = o.order === 'timer-first' ? [1, 0] : [0, 1]
  const afterStall = (t: number, delay: number): number => {
    const stall = inWindow(t, o.localStalls)
    return stall === undefined ? t : stall[1] + delay
  }
  const deliveries = o.peers
    .flatMap((p) => arrivalsOf(p, s, o.untilMs, rng).map((t) => ({ id: p.id, t })))
    .map(({ id, t }) => ({ id, t: afterStall(t, ioDelay) }))
    .sort((a, b) => a.t - b.t)
  const transitions: Transition[] = []
  let next = 0
  let tick = 0
  while (tick <= o.untilMs) {
    tick = afterStall(tick, timerDelay)
    for (let d = deliveries[next]; d !== undefined && d.t <= tick; d = deliveries[++next]) registry.heartbeat(d.id, d.t)
    const verdict = o.localHealth === false ? undefined : localHealth.tick(tick, s.checkIntervalMs)
    const { unreachable, reachable } = registry.check(tick, verdict)
    for (const id of unreachable) transitions.push({ atMs: tick, id, to: 'unreachable' })
    for (const id of reachable) transitions.push({ atMs: tick, id, to: 'reachable' })
    tick += s.checkIntervalMs + rng() * 5
  }
  return { registry, transitions, localHealth }
}

const TARGET_MS: Record<FailureDetectorProfileName, number> = { test: 3_500, prod: 6_000 }
const profiles = ['test', 'prod'] as const
const peersNamed = (n: number): PeerPlan[] => Array.from({ length: n }, (_, i) => ({ id: `10.0.0.${i + 1}:7100#${i + 1}` }))

/** Every sample a detector recorded, without the two seeds. */
function recordedSamples(registry: FailureDetectorRegistry, id: string): number[] {
  return registry.detectorOf(id)?.history.samples().slice(2) ?? []
}

describe('FailureDetectorRegistry: end-to-end timing targets (simulated driver)', () => {
  it.each(profiles)('%s: zero false positives over a 60 s idle run', (name) => {
    for (const seed of [1, 2, 3]) {
      const { transitions } = simulate({ settings: FAILURE_DETECTOR_PROFILES[name], peers: peersNamed(5), untilMs: 60_000, seed })
      expect(transitions).toEqual([])
    }
  })

  it.each(profiles)('%s: kill -9 is detected after 1.5 s and within the target, at any phase', (name) => {
    const settings = FAILURE_DETECTOR_PROFILES[name]
    const delays: number[] = []
    for (let seed = 1; seed <= 25; seed++) {
      const killAtMs = 20_000 + seededRng(seed)() * settings.heartbeatIntervalMs
      const [victim, ...others] = peersNamed(3) as [PeerPlan, ...PeerPlan[]]
      const { transitions } = simulate({ settings, peers: [{ ...victim, killAtMs }, ...others], untilMs: 30_000, seed })
      expect(transitions.map((t) => [t.id, t.to])).toEqual([[victim.id, 'unreachable']])
      delays.push((transitions[0]?.atMs ?? NaN) - killAtMs)
    }
    expect(Math.min(...delays)).toBeGreaterThan(1_500)
    expect(Math.max(...delays)).toBeLessThanOrEqual(TARGET_MS[name])
  })

  it.each(profiles)('%s: a peer SIGSTOPped for 1 s is never Unreachable', (name) => {
    const settings = FAILURE_DETECTOR_PROFILES[name]
    for (let seed = 1; seed <= 25; seed++) {
      const from = 20_000 + seededRng(seed)() * settings.heartbeatIntervalMs
      const peers: PeerPlan[] = [{ id: 'stopped', stalls: [[from, from + 1_000]] }, ...peersNamed(2)]
      expect(simulate({ settings, peers, untilMs: 30_000, seed }).transitions).toEqual([])
    }
  })
})

describe('FailureDetectorRegistry: local pause (Lifeguard-style local health)', () => {
  it.each(profiles.flatMap((p) => orders.flatMap((o) => [3_000, 10_000].map((ms) => [p, o, ms] as const))))('%s, %s: after its own event loop is blocked %i ms, the node accuses no one and keeps clean histories', (name, order, stallMs) => {
    const settings = FAILURE_DETECTOR_PROFILES[name]
    for (let seed = 1; seed <= 10; seed++) {
      const from = 20_000 + seededRng(seed)() * 1_000
      const { registry, transitions, localHealth } = simulate({ settings, peers: peersNamed(4), untilMs: 45_000, seed, order, localStalls: [[from, from + stallMs]] })
      expect(transitions).toEqual([])
      expect(localHealth.pauseCount).toBe(1)
      for (const id of registry.ids()) {
        const samples = recordedSamples(registry, id)
        expect(samples.length).toBeGreaterThan(20)
        // Only genuine inter-arrival times: no 3 s gap, no ~0 ms burst interval.
        expect(Math.max(...samples)).toBeLessThan(settings.heartbeatIntervalMs + 50)
        expect(Math.min(...samples)).toBeGreaterThan(settings.heartbeatIntervalMs - 50)
      }
    }
  })

  // prod alone tolerates 3.5 s of silence, so its control stalls 4 s.
  it.each([['test', 3_000], ['prod', 4_000]] as const)('%s, control: without local health a %i ms stall accuses peers (timer first) or poisons histories (I/O first)', (name, stallMs) => {
    const base = { settings: FAILURE_DETECTOR_PROFILES[name], peers: peersNamed(4), untilMs: 40_000, seed: 1, localStalls: [[20_000, 20_000 + stallMs]] as const, localHealth: false }
    const timerFirst = simulate({ ...base, order: 'timer-first' })
    expect(timerFirst.transitions.filter((t) => t.to === 'unreachable').length).toBeGreaterThan(0)
    const ioFirst = simulate({ ...base, order: 'io-first' })
    const h = FAILURE_DETECTOR_PROFILES[name].heartbeatIntervalMs
    const poisoned = ioFirst.registry.ids().filter((id) => recordedSamples(ioFirst.registry, id).some((x) => x > 2 * h || x < h / 2))
    expect(poisoned).toEqual(ioFirst.registry.ids())
  })

  it.each(profiles.flatMap((p) => orders.map((o) => [p, o] as const)))('%s, %s: a 1 s SIGSTOP of this node causes no Unreachable at all', (name, order) => {
    const settings = FAILURE_DETECTOR_PROFILES[name]
    for (let seed = 1; seed <= 10; seed++) {
      const from = 20_000 + seededRng(seed)() * 1_000
      const { transitions, localHealth } = simulate({ settings, peers: peersNamed(4), untilMs: 30_000, seed, order, localStalls: [[from, from + 1_000]] })
      expect(transitions).toEqual([])
      expect(localHealth.pauseCount).toBe(1)
    }
  })

  it('a peer that really died while this node was paused is still detected after the grace window', () => {
    const settings = FAILURE_DETECTOR_PROFILES.test
    const [victim, ...others] = peersNamed(3) as [PeerPlan, ...PeerPlan[]]
    const { transitions } = simulate({ settings, peers: [{ ...victim, killAtMs: 21_000 }, ...others], untilMs: 40_000, seed: 9, localStalls: [[20_000, 23_000]] })
    expect(transitions.map((t) => [t.id, t.to])).toEqual([[victim.id, 'unreachable']])
    const at = transitions[0]?.atMs ?? NaN
    // Resumed at 23 s: silence observed only from then on, so not before 23 s + 2 s,
    // and no later than the profile's own bound after the resume.
    expect(at).toBeGreaterThan(23_000 + 2_000)
    expect(at - 23_000).toBeLessThanOrEqual(TARGET_MS.test)
  })

  it('onLocalPause forgives the blind time, retracts samples inside it and suppresses accusations and downing', () => {
    const s = FAILURE_DETECTOR_PROFILES.test
    const r = new FailureDetectorRegistry(s)
    for (let t = 0; t <= 10_000; t += 500) r.heartbeat('a', t)
    r.heartbeat('a', 13_100) // buffered during a 3 s stall, processed before the tick
    r.heartbeat('a', 13_101)
    expect(recordedSamples(r, 'a').filter((x) => x !== 500)).toEqual([1])
    r.onLocalPause(13_200, 3_200)
    expect(recordedSamples(r, 'a').every((x) => x === 500)).toBe(true)
    expect(r.detectorOf('a')?.lastHeartbeatMs).toBe(13_200)
    expect(r.isSuppressed(13_200 + s.localPauseGraceMs - 1)).toBe(true)
    expect(r.isSuppressed(13_200 + s.localPauseGraceMs)).toBe(false)
    // Heartbeats inside the grace window only move the timestamp.
    expect(r.heartbeat('a', 13_500)).toBe('not-sampled')
    expect(r.heartbeat('a', 14_300)).toBe('sampled')
  })

  it('accepts the bare timer lag too (onLocalPause(now, lagMs)) and never moves a heartbeat past now', () => {
    const r = new FailureDetectorRegistry(FAILURE_DETECTOR_PROFILES.prod)
    r.heartbeat('a', 0)
    r.heartbeat('b', 2_000)
    r.onLocalPause(3_000, 1_500)
    expect(r.detectorOf('a')?.lastHeartbeatMs).toBe(1_500)
    expect(r.detectorOf('b')?.lastHeartbeatMs).toBe(3_000)
    expect(r.check(3_000)).toEqual({ unreachable: [], reachable: [] })
  })
})

describe('FailureDetectorRegistry: reachability transitions', () => {
  const s = FAILURE_DETECTOR_PROFILES.test

  it('Unreachable is reversible: heartbeats resuming make the member Reachable again, then it can fail again', () => {
    const [victim, ...others] = peersNamed(2) as [PeerPlan, ...PeerPlan[]]
    const { transitions, registry } = simulate({ settings: s, peers: [{ ...victim, killAtMs: 10_000, resumeAtMs: 20_000 }, ...others], untilMs: 30_000, seed: 4 })
    expect(transitions.map((t) => t.to)).toEqual(['unreachable', 'reachable'])
    expect(transitions.every((t) => t.id === victim.id)).toBe(true)
    const back = transitions[1]?.atMs ?? NaN
    expect(back).toBeGreaterThan(20_000)
    expect(back - 20_000).toBeLessThanOrEqual(s.checkIntervalMs + 20)
    expect(registry.isReachable(victim.id)).toBe(true)
    expect(registry.unreachableSince(victim.id)).toBeUndefined()
    // the outage was not recorded as a sample
    expect(Math.max(...recordedSamples(registry, victim.id))).toBeLessThan(s.heartbeatIntervalMs + 50)
  })

  it('reports transitions once, records Unreachable-since, and needs a new heartbeat to come back', () => {
    const r = new FailureDetectorRegistry(s)
    for (let t = 0; t <= 5_000; t += 500) r.heartbeat('a', t)
    expect(r.check(6_000)).toEqual({ unreachable: [], reachable: [] })
    expect(r.check(7_600)).toEqual({ unreachable: ['a'], reachable: [] })
    expect(r.check(7_700)).toEqual({ unreachable: [], reachable: [] })
    expect(r.isReachable('a')).toBe(false)
    expect(r.reachability('a')).toBe('unreachable')
    expect(r.unreachableSince('a')).toBe(7_600)
    // A local pause moves the timestamps but is not a heartbeat: still Unreachable.
    r.onLocalPause(8_000, 5_000)
    expect(r.check(8_000)).toEqual({ unreachable: [], reachable: [] })
    expect(r.unreachableSince('a')).toBe(8_000)
    r.heartbeat('a', 20_000)
    expect(r.check(20_050)).toEqual({ unreachable: [], reachable: ['a'] })
    expect(r.unreachableSince('a')).toBeUndefined()
    expect(r.phi('a', 20_050)).toBeLessThan(1)
  })

  it('only a heartbeat brings a member back, not statistics that changed under it', () => {
    const r = new FailureDetectorRegistry(s)
    for (let t = 0; t <= 10_000; t += 500) r.heartbeat('a', t)
    for (let t = 10_300; t <= 11_500; t += 300) r.heartbeat('a', t) // five short intervals lower the mean
    expect(r.check(14_000)).toEqual({ unreachable: ['a'], reachable: [] }) // silence 2.5 s > 2485 ms
    // Retracting the short samples raises the tolerated silence back to 2522 ms, so φ
    // drops below the threshold, but no heartbeat arrived: still Unreachable.
    r.onLocalPause(14_000, 3_800)
    expect(r.detectorOf('a')?.isAvailable(14_000)).toBe(true)
    expect(r.check(14_000)).toEqual({ unreachable: [], reachable: [] })
    r.heartbeat('a', 14_100)
    expect(r.check(14_100)).toEqual({ unreachable: [], reachable: ['a'] }) // coming back is allowed in the grace window
  })

  it('accusations are suppressed during the post-pause grace window and resume after it', () => {
    const r = new FailureDetectorRegistry(s)
    for (let t = 0; t <= 5_000; t += 500) r.heartbeat('a', t)
    r.onLocalPause(7_400, 100) // a short stall: the crossing moves from 7522.6 to 7622.6
    expect(r.suppressedUntilMs).toBe(7_400 + s.localPauseGraceMs)
    expect(r.detectorOf('a')?.isAvailable(7_700)).toBe(false)
    expect(r.check(7_700)).toEqual({ unreachable: [], reachable: [] })
    expect(r.check(8_399)).toEqual({ unreachable: [], reachable: [] })
    expect(r.check(8_400)).toEqual({ unreachable: ['a'], reachable: [] })
  })

  it('a heartbeat followed by renewed silence does not flip the member back', () => {
    const r = new FailureDetectorRegistry(s)
    for (let t = 0; t <= 5_000; t += 500) r.heartbeat('a', t)
    r.check(8_000)
    r.heartbeat('a', 9_000)
    expect(r.check(12_000)).toEqual({ unreachable: [], reachable: [] })
    expect(r.isReachable('a')).toBe(false)
  })

  it('monitor() makes a member that never sends a heartbeat Unreachable on the seed statistics', () => {
    const r = new FailureDetectorRegistry(s)
    expect(r.monitor('silent', 1_000)).toBe(true)
    expect(r.monitor('silent', 1_500)).toBe(false)
    expect(r.check(1_000 + 2_600)).toEqual({ unreachable: [], reachable: [] })
    expect(r.check(1_000 + 2_700)).toEqual({ unreachable: ['silent'], reachable: [] })
  })

  it('unknown and removed members are reachable with phi 0 and are never reported', () => {
    const r = new FailureDetectorRegistry(s)
    expect(r.isReachable('ghost')).toBe(true)
    expect(r.phi('ghost', 1e9)).toBe(0)
    expect(r.reachability('ghost')).toBeUndefined()
    r.heartbeat('a', 0)
    r.heartbeat('b', 0)
    expect(r.remove('a')).toBe(true)
    expect(r.remove('a')).toBe(false)
    expect(r.has('a')).toBe(false)
    expect(r.ids()).toEqual(['b'])
    expect(r.check(60_000)).toEqual({ unreachable: ['b'], reachable: [] })
  })
})

describe('FailureDetectorRegistry: stable-after window before Down', () => {
  const s = FAILURE_DETECTOR_PROFILES.test

  function unreachableAt(r: FailureDetectorRegistry, id: string): number {
    for (let t = 0; t <= 2_000; t += 500) r.heartbeat(id, t)
    for (let now = 2_000; ; now += 100) if (r.check(now).unreachable.includes(id)) return now
  }

  it('a member becomes down-eligible only after staying Unreachable for downAfterUnreachableMs', () => {
    const r = new FailureDetectorRegistry(s)
    const since = unreachableAt(r, 'a')
    expect(r.downEligible(since + s.downAfterUnreachableMs - 1)).toEqual([])
    expect(r.downEligible(since + s.downAfterUnreachableMs)).toEqual(['a'])
  })

  it('coming back inside the window resets it', () => {
    const r = new FailureDetectorRegistry(s)
    const since = unreachableAt(r, 'a')
    r.heartbeat('a', since + 1_000)
    r.check(since + 1_000)
    expect(r.downEligible(since + 10 * s.downAfterUnreachableMs)).toEqual([])
  })

  it('a local pause does not count towards the window, and nothing is down-eligible during the grace', () => {
    const r = new FailureDetectorRegistry(s)
    const since = unreachableAt(r, 'a')
    r.onLocalPause(since + 3_000, 2_000)
    expect(r.unreachableSince('a')).toBe(since + 2_000)
    expect(r.downEligible(since + 3_000)).toEqual([])
    expect(r.downEligible(since + 2_000 + s.downAfterUnreachableMs - 1)).toEqual([])
    expect(r.downEligible(since + 2_000 + s.downAfterUnreachableMs)).toEqual(['a'])
  })
})

describe('FailureDetectorRegistry: properties', () => {
  it('transitions alternate per member, agree with isReachable, and phi is never NaN', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('heartbeat' as const), id: fc.constantFrom('a', 'b', 'c'), dt: fc.double({ min: 0, max: 4_000, noNaN: true }) }),
      fc.record({ kind: fc.constant('check' as const), dt: fc.double({ min: 0, max: 4_000, noNaN: true }) }),
      fc.record({ kind: fc.constant('pause' as const), dt: fc.double({ min: 0, max: 4_000, noNaN: true }), blind: fc.double({ min: 0, max: 10_000, noNaN: true }) }),
      fc.record({ kind: fc.constant('remove' as const), id: fc.constantFrom('a', 'b', 'c') }),
    )
    fc.assert(
      fc.property(fc.constantFrom(...profiles), fc.array(op, { maxLength: 120 }), (name, ops) => {
        const r = new FailureDetectorRegistry(FAILURE_DETECTOR_PROFILES[name])
        const last = new Map<string, 'reachable' | 'unreachable'>()
        let now = 0
        for (const o of ops) {
          if (o.kind === 'heartbeat') r.heartbeat(o.id, (now += o.dt))
          else if (o.kind === 'pause') r.onLocalPause((now += o.dt), o.blind)
          else if (o.kind === 'remove') {
            r.remove(o.id)
            last.delete(o.id)
          } else {
            const { unreachable, reachable } = r.check((now += o.dt))
            for (const id of unreachable) {
              expect(last.get(id) ?? 'reachable').toBe('reachable')
              last.set(id, 'unreachable')
            }
            for (const id of reachable) {
              expect(last.get(id)).toBe('unreachable')
              last.set(id, 'reachable')
            }
          }
          for (const id of r.ids()) {
            expect(r.phi(id, now)).not.toBeNaN()
            expect(r.isReachable(id)).toBe((last.get(id) ?? 'reachable') === 'reachable')
            expect(r.unreachableSince(id) !== undefined).toBe(!r.isReachable(id))
          }
        }
      }),
    )
  })
})
