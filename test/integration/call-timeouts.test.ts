/**
 * A call's timeout (its own, else its kind's rpc.timeoutMs, else the node's
 * askTimeoutMs) holds end to end. Every relay on its way (the calling node's
 * main thread for a grain's call to another node, the called node's main
 * thread for any call from another node) waits as long as the caller,
 * because the ask carries its timeout (the envelope's timeout_ms). Here both
 * nodes' askTimeoutMs is 250 ms and the `patient` kind's own timeout 3 s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GrainClusterError, type GrainNode, type RuntimeEvent } from '../../src/index.js'
import { keyPlacedOn, startPair } from '../helpers/in-process-cluster.js'
import { waitUntil } from '../helpers/wait-until.js'

const GRAINS = [new URL('../fixtures/grains/test-grains.ts', import.meta.url)]

/**
 * Two asks sent to patient `key` while it cannot take them: `mark('late')`,
 * whose caller waits 200 ms, then `mark('kept')` (the kind's 3 s). The first
 * fails at its caller and is never run (one rpc.expired event); once
 * `inFront` has settled, the key's marks are only the second's.
 */
async function expectOnlyTheAwaitedAskRun(a: GrainNode, key: string, inFront?: Promise<unknown>): Promise<void> {
  const expired: RuntimeEvent[] = []
  const off = a.events.subscribe('rpc.expired', (e) => expired.push(e))
  try {
    const gaveUp = a.ask('patient', key, 'mark', 'late', { timeoutMs: 200 }).then(
      () => undefined,
      (x: unknown) => x,
    )
    const waits = a.ask('patient', key, 'mark', 'kept')
    expect(GrainClusterError.is(await gaveUp, 'ERR_GRAIN_TIMEOUT')).toBe(true)
    await inFront
    await waits
    expect(await a.ask('patient', key, 'marks')).toEqual(['kept'])
    await waitUntil(() => expired.length === 1, { what: 'the rpc.expired event', timeoutMs: 10_000 })
    expect(expired[0]).toMatchObject({ kind: 'patient', key, method: 'mark', code: 'ERR_GRAIN_TIMEOUT', timeoutMs: 200 })
    expect(expired[0]!.type === 'rpc.expired' && expired[0].waitedMs).toBeGreaterThanOrEqual(200)
  } finally {
    off()
  }
}

describe('call timeouts across relays', () => {
  let a: GrainNode
  let b: GrainNode

  beforeAll(async () => {
    ;[a, b] = await startPair('call-timeouts', { grains: GRAINS, askTimeoutMs: 250 })
  })
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()])
  })

  it("the node API's calls to a grain on the other node wait for the kind's timeout, not the called node's default", async () => {
    const onB = keyPlacedOn(b, 'patient', 'api-', a)
    expect(await a.askPid(b.pid('patient', onB), 'slow', 800)).toBe('slept 800')
    expect(await a.ask('patient', onB, 'slow', 800)).toBe('slept 800')
    // A call's own timeout, longer still, holds as well.
    expect(await a.ask('counter', keyPlacedOn(b, 'counter', 'api-own-', a), 'add', 1, { timeoutMs: 4_000 })).toBe(1)
  })

  it("a grain's calls to a grain on the other node, by key and by PID, wait for the called kind's timeout on both nodes", async () => {
    const far = keyPlacedOn(b, 'patient', 'far-', a)
    expect(await a.ask('patient', keyPlacedOn(a, 'patient', 'caller-'), 'slowVia', { key: far, ms: 800 })).toBe('slept 800')
    // The calling counter's own call needs a timeout of its own; askByPid sets none for the patient it calls.
    const byPid = await a.ask('counter', keyPlacedOn(a, 'counter', 'pid-caller-'), 'askByPid', { pid: b.pid('patient', far), method: 'slow', payload: 800 }, { timeoutMs: 5_000 })
    expect(byPid).toBe('slept 800')
  })

  it("and still ends at the kind's timeout, with the caller's error", async () => {
    const onB = keyPlacedOn(b, 'patient', 'late-', a)
    const t0 = performance.now()
    const e = await a.ask('patient', onB, 'slow', 6_000).then(
      () => undefined,
      (x: unknown) => x,
    )
    const took = performance.now() - t0
    expect(GrainClusterError.is(e, 'ERR_GRAIN_TIMEOUT'), String(e)).toBe(true)
    expect(took).toBeGreaterThanOrEqual(2_900)
  })

  it("an ask whose caller's timeout passed while it waited in its key's queue is not run; one still awaited is", async () => {
    const key = keyPlacedOn(a, 'patient', 'queued-')
    // The key is busy for 1 s; two asks queue behind it.
    const holding = a.ask('patient', key, 'slow', 1_000)
    await expectOnlyTheAwaitedAskRun(a, key, holding)
    expect(await a.cluster!.metrics!.text()).toMatch(/graincluster_grain_expired_total\{kind="patient"\} 1\b/)
  })

  it("a queue full of asks whose callers gave up takes a new call instead of refusing it (queueDepth 2, reject)", async () => {
    const key = keyPlacedOn(a, 'patient', 'full-')
    const expired: RuntimeEvent[] = []
    const rejected: RuntimeEvent[] = []
    const offs = [a.events.subscribe('rpc.expired', (e) => expired.push(e)), a.events.subscribe('rpc.rejected', (e) => rejected.push(e))]
    try {
      const holding = a.ask('patient', key, 'slow', 2_000)
      const gaveUp = ['late-1', 'late-2'].map((m) =>
        a.ask('patient', key, 'mark', m, { timeoutMs: 200 }).then(
          () => undefined,
          (x: unknown) => x,
        ),
      )
      for (const e of await Promise.all(gaveUp)) expect(GrainClusterError.is(e, 'ERR_GRAIN_TIMEOUT'), String(e)).toBe(true)
      // A margin past the 200 ms the worker counts from each ask's arrival (the callers' clocks started a little earlier).
      await new Promise((r) => setTimeout(r, 50))
      // The queue is full, but only of calls nobody awaits: they are expired, and this one waits in their place.
      const kept = a.ask('patient', key, 'mark', 'kept')
      await holding
      await kept
      expect(await a.ask('patient', key, 'marks')).toEqual(['kept'])
      expect(rejected.filter((e) => e.type === 'rpc.rejected' && e.key === key)).toEqual([])
      await waitUntil(() => expired.length === 2, { what: 'two rpc.expired events', timeoutMs: 10_000 })
      expect(expired.map((e) => e.type === 'rpc.expired' && e.method)).toEqual(['mark', 'mark'])
    } finally {
      for (const off of offs) off()
    }
  })

  it('asks that waited out a passivation keep their timeout on the next activation: the one whose caller gave up is not run', async () => {
    const key = keyPlacedOn(a, 'patient', 'passivating-')
    expect(await a.ask('patient', key, 'mark', 'first')).toBeUndefined()
    // onDeactivate takes 1 s; both asks wait on the passivating activation, then go to a fresh one,
    // which runs only the call still awaited.
    await a.ask('patient', key, 'retire', 1_000)
    await expectOnlyTheAwaitedAskRun(a, key)
  })
})
