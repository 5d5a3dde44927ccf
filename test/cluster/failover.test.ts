/**
 * Failover of grain keys between real node processes on 127.0.0.1 (issue 5):
 * 3 GrainNodes (test/fixtures/cluster/placement-node-process.ts, one worker
 * each, `test` failure-detector profile), 10,000 keys of the `placed` grain
 * called once from n0, then `kill -9` of n2 and n0 calls every key again
 * (failed calls retried, 500 ms ask timeout) until all answer.
 *
 * Single activation: `placed` never passivates, so a key that was ever
 * activated on a survivor is still in that survivor's activation set at the
 * end; disjoint final sets therefore mean no key was ever live on two
 * surviving nodes (the victim's activations died with it).
 *
 * The measured time from the kill to the last key answering is printed; the
 * benchmark (native-free-bench/failover.bench.ts) measures the same with the
 * defaults (prod profile).
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { killAndRecover, type PlacementCluster, startPlacementCluster, stopPlacementNodes } from '../helpers/placement-cluster.js'

const KEYS = 10_000
/** Generous for a loaded 2-core CI box; detection alone is 2.0–2.6 s with the test profile. */
const RECOVERY_BOUND_MS = 30_000
/** Codes a call may fail with while its owner is dead or its key moves. */
const TRANSIENT = new Set(['ERR_AUTHORITY_UNREACHABLE', 'ERR_GRAIN_MOVED', 'ERR_GRAIN_TIMEOUT', 'ERR_AUTHORITY_REMOVED', 'ERR_AUTHORITY_QUEUE_OVERFLOW', 'ERR_AUTHORITY_QUARANTINED', 'ERR_GRAIN_QUEUE_FULL', 'ERR_GRAIN_DROPPED'])

describe('kill -9 of one of 3 nodes: its keys re-activate on the survivors', () => {
  let c: PlacementCluster

  beforeAll(async () => {
    c = await startPlacementCluster(3, { failureDetector: { profile: 'test' }, clusterName: 'failover-test' })
  })
  afterAll(async () => {
    await stopPlacementNodes()
  })

  it('every key answers again within the bound, served by one live node only', async () => {
    const pids = c.nodes.map((n) => n.pid)
    const activeBefore: string[][] = []
    const r = await killAndRecover(c, {
      keys: KEYS,
      prefix: 'fo-',
      askTimeoutMs: 500,
      deadlineMs: 90_000,
      beforeKill: async () => {
        for (const n of c.nodes) activeBefore.push(await n.active())
      },
    })

    // Before the kill: every key answered, spread within ±15 % of even, each active where it answered from.
    expect(r.beforeErrors).toEqual({})
    const share = pids.map((pid) => r.before.filter((p) => p === pid).length)
    expect(share.reduce((a, b) => a + b, 0)).toBe(KEYS)
    for (const s of share) {
      expect(s).toBeGreaterThanOrEqual(Math.floor((KEYS / 3) * 0.85))
      expect(s).toBeLessThanOrEqual(Math.ceil((KEYS / 3) * 1.15))
    }
    activeBefore.forEach((keys, i) => expect(new Set(keys)).toEqual(new Set(r.before.flatMap((p, k) => (p === pids[i] ? [`fo-${k}`] : [])))))

    // After the kill: all answered, within the bound.
    const t = r.after
    const victim = r.victim.authority
    const detectedAt = c.nodes[0]!.eventAbout('member.unreachable', victim)?.t
    const downedAt = c.nodes[0]!.eventAbout('member.downed', victim)?.t
    const ms = (x: number | null | undefined): string => (x === null || x === undefined ? 'n/a' : `${Math.round(x - r.killedAt)} ms`)
    console.info(
      `[failover] test profile, ${KEYS} keys, kill -9 of 1 of 3: all answered after ${ms(t.allAt)} ` +
        `(n0: unreachable after ${ms(detectedAt)}, downed after ${ms(downedAt)}; ${t.attempts} calls; retried errors ${JSON.stringify(t.errors)})`,
    )
    expect(t.pending, `keys still failing: ${JSON.stringify(t.errors)}`).toBe(0)
    expect(t.allAt! - r.killedAt).toBeLessThanOrEqual(RECOVERY_BOUND_MS)
    for (const code of Object.keys(t.errors)) expect(TRANSIENT, `unexpected error ${code}`).toContain(code)

    // Keys of survivors stayed put; the victim's keys moved to a survivor.
    const survivorPids = r.survivors.map((n) => n.pid)
    let moved = 0
    for (let k = 0; k < KEYS; k++) {
      if (r.before[k] === r.victim.pid) {
        moved++
        expect(survivorPids).toContain(t.served[k])
      } else expect(t.served[k], `fo-${k}`).toBe(r.before[k])
    }
    expect(moved).toBe(share[2])

    // No key live on two survivors; each is live exactly where it answered from.
    const sets = await Promise.all(r.survivors.map(async (n) => new Set(await n.active())))
    const both = [...sets[0]!].filter((k) => sets[1]!.has(k))
    expect(both, 'keys active on both survivors').toEqual([])
    r.survivors.forEach((n, i) => expect(sets[i]).toEqual(new Set(t.served.flatMap((p, k) => (p === n.pid ? [`fo-${k}`] : [])))))
  })
})
