/**
 * membership scope: the membership protocol between real node processes on
 * 127.0.0.1 (test/fixtures/cluster/node-process.ts, driven by
 * test/helpers/cluster-harness.ts, the same harness as test/cluster/).
 *
 * (a) join: 4 nodes form a cluster through the seed; a 5th process starts.
 *     Measured from its join request (its connection to the seed is up; the
 *     join message leaves in the same event-loop turn) to the moment all 5
 *     agree on the full table (the newcomer is Up in every node's table;
 *     the tables are then checked to be identical).
 * (b) kill -9 detection: once every detector holds a steady history, a
 *     member is SIGKILLed at a random phase of the heartbeat cycle; measured
 *     on every survivor from the kill to its first member.unreachable about
 *     the victim, with the 'test' and the 'prod' profile.
 * (c) false positives: a cluster with default (prod) settings idles for 60 s
 *     (--quick: 3 nodes, 5 s, while the other clusters of this scope run);
 *     every member.unreachable is one.
 *
 * Baselines for (b), from the same run: the profile's theoretical window
 * [T − H, T + C] (profiles.ts: T = H + pause + y₈·σ, σ clamped at 100 ms), and a
 * fixed-timeout ("deadline") detector with timeout H + acceptable pause (what
 * Pekko's DeadlineFailureDetector does with the same settings), evaluated
 * on the same heartbeat log: its detection = the survivor's last heartbeat
 * answer from the victim + timeout − kill time. Timestamps are the epoch-ms
 * `t` stamps the processes print (one machine clock).
 */

import { FAILURE_DETECTOR_PROFILES, type FailureDetectorProfileName } from '../src/cluster/failure-detector/profiles.js'
import { phiCrossingMs } from '../src/cluster/failure-detector/phi-accrual.js'
import {
  type NodeProcess,
  type NodeProcessOptions,
  nowMs,
  startNode,
  startNodes,
  stopAll,
  waitForSameTable,
  waitForSteadyHeartbeats,
} from '../test/helpers/cluster-harness.js'
import { waitUntil } from '../test/helpers/wait-until.js'
import { check, type BenchOptions, type Row, type ScopeResult, type TargetCheck } from './lib/report.js'
import { median } from './lib/stats.js'

const JOIN_TARGET_MS = 1_000
const DETECTION_FLOOR_MS = 1_500
const DETECTION_TARGET_MS: Record<FailureDetectorProfileName, number> = { test: 3_500, prod: 6_000 }

interface JoinSample {
  profile: FailureDetectorProfileName
  /** join request → newcomer Up in all 5 tables. */
  agreeMs: number
  /** join request → the newcomer merged the seed's welcome (whole table). */
  welcomeMs: number
}

interface DetectionSample {
  profile: FailureDetectorProfileName
  survivor: string
  /** kill → first member.unreachable on this survivor. */
  detectMs: number
  /** Whether this survivor's own detector flagged it (else it learned it by gossip first). */
  own: boolean
  /** kill → deadline detector's verdict (last heartbeat answer + H + pause). */
  deadlineMs: number
  /** kill → the moment φ crossed the threshold on this survivor, from its history at the kill. */
  phiPredictedMs: number
}

const sameRef = (p: NodeProcess) => (e: { authority: string; nodeId: string }): boolean => e.authority === p.addr && e.nodeId === p.id

function theoryWindow(profile: FailureDetectorProfileName): { t: number; lo: number; hi: number; deadline: number } {
  const s = FAILURE_DETECTOR_PROFILES[profile]
  const t = phiCrossingMs(s.threshold, s.heartbeatIntervalMs + s.acceptableHeartbeatPauseMs, s.minStdDeviationMs)
  return { t, lo: t - s.heartbeatIntervalMs, hi: t + s.checkIntervalMs, deadline: s.heartbeatIntervalMs + s.acceptableHeartbeatPauseMs }
}

function fdOptions(profile: FailureDetectorProfileName): Partial<NodeProcessOptions> {
  // prod is the default: pass nothing, so (c) runs with default settings.
  return profile === 'prod' ? {} : { failureDetector: { profile } }
}

/** (a): n − 1 nodes form a cluster, then one more joins; returns every node and the timings. */
async function formWithLateJoiner(n: number, profile: FailureDetectorProfileName, log: (line: string) => void): Promise<{ nodes: NodeProcess[]; join: JoinSample }> {
  const { nodes, seeds } = await startNodes(n - 1, fdOptions(profile))
  const [seed] = nodes as [NodeProcess]
  const newcomer = await startNode({ seeds, ...fdOptions(profile), label: `n${n - 1}` })
  const all = [...nodes, newcomer]
  await waitForSameTable(all, { timeoutMs: 30_000 })
  const request = newcomer.eventsOf('transport.connected', (e) => e.authority === seed.addr)[0]
  const welcome = newcomer.welcomes[0]
  if (request === undefined || welcome === undefined) throw new Error(`${newcomer.label}: no connection to the seed or no welcome recorded`)
  const ups = all.map((p) => p.eventsOf('member.up', sameRef(newcomer))[0]?.t)
  if (ups.some((t) => t === undefined)) throw new Error(`not every node reported ${newcomer.label} Up`)
  const join: JoinSample = { profile, agreeMs: Math.max(...(ups as number[])) - request.t, welcomeMs: welcome.t - request.t }
  log(`membership: ${profile} join of node ${n}: welcome after ${join.welcomeMs.toFixed(0)} ms, all agree after ${join.agreeMs.toFixed(0)} ms`)
  return { nodes: all, join }
}

/** (b): SIGKILL `victim` at a random heartbeat phase; detection on every other node. */
async function killAndDetect(nodes: readonly NodeProcess[], victim: NodeProcess, profile: FailureDetectorProfileName, log: (line: string) => void): Promise<DetectionSample[]> {
  const s = FAILURE_DETECTOR_PROFILES[profile]
  const survivors = nodes.filter((p) => p !== victim)
  // Two real samples beside the two seed ones already clamp σ at its minimum (profiles.ts).
  await waitForSteadyHeartbeats(nodes, { minSamples: 4, timeoutMs: 30_000 })
  // A random phase of the heartbeat cycle (the stimulus, not a wait for a result).
  const at = nowMs() + Math.random() * s.heartbeatIntervalMs
  await waitUntil(() => nowMs() >= at, { timeoutMs: 5_000, intervalMs: 2 })
  const before = await Promise.all(survivors.map((p) => p.members()))
  const killedAt = victim.kill('SIGKILL')
  await victim.waitExit()
  await waitUntil(() => survivors.every((p) => p.eventsOf('member.unreachable', sameRef(victim)).length > 0), {
    timeoutMs: 30_000,
    what: `${profile}: every survivor flags ${victim.label}`,
  })
  const after = await Promise.all(survivors.map((p) => p.members()))
  const id = `${victim.addr}#${victim.id}`
  const out = survivors.map((p, i): DetectionSample => {
    const first = p.eventsOf('member.unreachable', sameRef(victim))[0]!
    const lastAck = after[i]!.lastHeartbeatAck[victim.addr]
    const d = before[i]!.detectors.find((x) => x.id === id)
    if (lastAck === undefined || d === undefined || d.suspicionAfterMs === null) throw new Error(`${p.label}: no heartbeat log for ${victim.label}`)
    return {
      profile,
      survivor: p.label,
      detectMs: first.t - killedAt,
      own: first.observer === p.addr,
      deadlineMs: lastAck + s.heartbeatIntervalMs + s.acceptableHeartbeatPauseMs - killedAt,
      phiPredictedMs: lastAck + d.suspicionAfterMs - killedAt,
    }
  })
  log(`membership: ${profile} kill -9 of ${victim.label}: ${out.map((x) => x.detectMs.toFixed(0)).join(', ')} ms`)
  return out
}

/** (c): count member.unreachable on `nodes` over `windowMs` of idling (from now). */
async function idleWindow(nodes: readonly NodeProcess[], windowMs: number, startAt = nowMs()): Promise<{ unreachable: number; paused: number; windowMs: number }> {
  const end = startAt + windowMs
  await waitUntil(() => nowMs() >= end, { timeoutMs: windowMs + 10_000, intervalMs: 50 })
  const inWindow = (e: { t: number }): boolean => e.t >= startAt && e.t <= end
  return {
    unreachable: nodes.reduce((a, p) => a + p.eventsOf('member.unreachable', inWindow).length, 0),
    paused: nodes.reduce((a, p) => a + p.eventsOf('node.paused', inWindow).length, 0),
    windowMs: end - startAt,
  }
}

const stats = (xs: readonly number[]): { min: number; median: number; max: number } => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) })

export async function run(o: BenchOptions): Promise<ScopeResult> {
  const startedAt = new Date().toISOString()
  const t0 = performance.now()
  const joins: JoinSample[] = []
  const detections: DetectionSample[] = []
  let fp = { unreachable: 0, paused: 0, windowMs: 0, nodes: 0 }
  const n = 5
  try {
    if (o.quick) {
      // Everything once, two clusters side by side: 3 prod nodes idle for 5 s (false
      // positives), then lose one (prod detection), while 5 test-profile nodes form,
      // take a late joiner and lose one.
      const idle = await startNodes(3)
      const idleFrom = nowMs()
      const prodPart = async (): Promise<void> => {
        const w = await idleWindow(idle.nodes, 5_000, idleFrom)
        fp = { ...w, nodes: idle.nodes.length }
        detections.push(...(await killAndDetect(idle.nodes, idle.nodes[1]!, 'prod', o.log)))
      }
      const testPart = async (): Promise<void> => {
        const t = await formWithLateJoiner(n, 'test', o.log)
        joins.push(t.join)
        detections.push(...(await killAndDetect(t.nodes, t.nodes[2]!, 'test', o.log)))
      }
      await Promise.all([prodPart(), testPart()])
    } else {
      for (let rep = 0; rep < 3; rep++) {
        const t = await formWithLateJoiner(n, 'test', o.log)
        joins.push(t.join)
        detections.push(...(await killAndDetect(t.nodes, t.nodes[1 + (rep % 4)]!, 'test', o.log)))
        await stopAll()
      }
      const p = await formWithLateJoiner(n, 'prod', o.log)
      joins.push(p.join)
      o.log('membership: prod cluster of 5 idles for 60 s')
      const w = await idleWindow(p.nodes, 60_000)
      fp = { ...w, nodes: p.nodes.length }
      detections.push(...(await killAndDetect(p.nodes, p.nodes[2]!, 'prod', o.log)))
      await stopAll()
      const p2 = await formWithLateJoiner(n, 'prod', o.log)
      joins.push(p2.join)
      detections.push(...(await killAndDetect(p2.nodes, p2.nodes[3]!, 'prod', o.log)))
    }
  } finally {
    await stopAll()
  }

  const rows: Row[] = []
  const targets: TargetCheck[] = []
  const notes: string[] = []
  for (const profile of ['test', 'prod'] as const) {
    const js = joins.filter((j) => j.profile === profile)
    if (js.length === 0) continue
    const a = stats(js.map((j) => j.agreeMs))
    const w = stats(js.map((j) => j.welcomeMs))
    rows.push({
      measure: 'join request → all 5 agree',
      profile,
      samples: js.length,
      'min ms': a.min,
      'median ms': a.median,
      'max ms': a.max,
      'baseline / theory': `welcome merged after ${w.median.toFixed(1)} ms (median)`,
      'baseline median ms': null,
    })
  }
  const allAgree = joins.map((j) => j.agreeMs)
  targets.push(check('join → all agree on the full table (worst run)', `≤ ${JOIN_TARGET_MS} ms`, Math.max(...allAgree), 'ms', Math.max(...allAgree) <= JOIN_TARGET_MS))

  for (const profile of ['test', 'prod'] as const) {
    const ds = detections.filter((d) => d.profile === profile)
    if (ds.length === 0) continue
    const th = theoryWindow(profile)
    const m = stats(ds.map((d) => d.detectMs))
    const dl = stats(ds.map((d) => d.deadlineMs))
    rows.push({
      measure: 'kill -9 → member.unreachable (each survivor)',
      profile,
      samples: ds.length,
      'min ms': m.min,
      'median ms': m.median,
      'max ms': m.max,
      'baseline / theory': `φ window ${th.lo.toFixed(0)}–${th.hi.toFixed(0)} ms; deadline ${th.deadline} ms timeout: ${dl.min.toFixed(0)}–${dl.max.toFixed(0)} ms`,
      'baseline median ms': dl.median,
    })
    const target = DETECTION_TARGET_MS[profile]
    targets.push(check(`kill -9 detection, ${profile} profile (worst survivor)`, `≤ ${target} ms`, m.max, 'ms', m.max <= target))
    targets.push(check(`kill -9 detection, ${profile} profile (earliest survivor)`, `> ${DETECTION_FLOOR_MS} ms`, m.min, 'ms', m.min > DETECTION_FLOOR_MS))
    const err = ds.map((d) => d.detectMs - d.phiPredictedMs)
    notes.push(
      `${profile}: measured − φ crossing predicted from each survivor's own history at the kill: ${stats(err).min.toFixed(0)}…${stats(err).max.toFixed(0)} ms ` +
        `(the check runs every ${FAILURE_DETECTOR_PROFILES[profile].checkIntervalMs} ms; a survivor told by gossip first can be earlier); ` +
        `${ds.filter((d) => d.own).length}/${ds.length} survivors flagged it with their own detector first. Per survivor: ` +
        ds.map((d) => `${d.survivor} ${d.detectMs.toFixed(0)} (deadline ${d.deadlineMs.toFixed(0)})`).join(', '),
    )
  }
  rows.push({
    measure: `false positives: member.unreachable while idle ${(fp.windowMs / 1000).toFixed(0)} s`,
    profile: 'prod (default)',
    samples: fp.nodes,
    'min ms': null,
    'median ms': null,
    'max ms': null,
    'baseline / theory': `${fp.unreachable} events (node.paused: ${fp.paused})`,
    'baseline median ms': null,
  })
  targets.push(check(`false positives, ${fp.nodes} idle nodes, ${(fp.windowMs / 1000).toFixed(0)} s`, '0', fp.unreachable, 'events', fp.unreachable === 0))
  notes.push(
    'Baselines: the φ window is the profile arithmetic of profiles.ts ([T − H, T + C], T = H + pause + 5.226·σ, σ = 100 ms); ' +
      'the deadline detector (fixed timeout H + pause, no σ term) is evaluated on the same heartbeat log: it would flag ~y₈·σ ≈ 520 ms earlier, ' +
      'the price φ pays to adapt to jittery heartbeats without a hand-tuned timeout.',
    'Join: "request" is the newcomer\'s connection to the seed coming up (the join message is sent in the same turn); "agree" is the last of the 5 nodes reporting the newcomer Up; ' +
      'the leader promotes Joining → Up only once every member has seen the Joining entry (gossip every 200 ms), then the Up entry spreads.',
    o.quick
      ? 'quick: one run per profile, two clusters side by side; the false-positive window is 5 s on 3 prod nodes while the test-profile cluster starts next to it (a harder case than idle).'
      : 'full: 3 test-profile runs, 2 prod runs (5 nodes each, a fresh cluster per run); the false-positive window is the first prod cluster, 60 s idle.',
  )
  return {
    scope: 'membership',
    title: 'membership between real node processes on 127.0.0.1: join convergence, kill -9 detection, false positives',
    method: 'hand timing with the epoch-ms stamps the processes print on each event; one process per node (node --import tsx), loopback TCP',
    baseline: 'φ window from the profile arithmetic, and a fixed-timeout (deadline) detector on the same heartbeat log',
    params: { nodes: n, quick: o.quick, fpWindowS: fp.windowMs / 1000, fpNodes: fp.nodes },
    rows,
    targets,
    notes,
    startedAt,
    durationMs: performance.now() - t0,
  }
}
