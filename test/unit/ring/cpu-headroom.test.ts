import { describe, expect, it } from 'vitest'
import { CpuHeadroom, PROBE_EVERY, parseCpuLine } from '../../../src/runtime/ring/cpu-headroom.js'

/** A fake /proc/stat on 2 CPUs: each window adds 2 × 10 ticks (100 ms), `idle` of them idle. */
function machine() {
  let busy = 0
  let idle = 0
  return {
    read: () => `cpu  ${busy} 0 0 ${idle} 0 0 0 0 0 0`,
    window(idleTicks: number) {
      idle += idleTicks
      busy += 20 - idleTicks
    },
  }
}

describe('CpuHeadroom', () => {
  it('parses the aggregate cpu line (idle + iowait of the first eight fields) and nothing else', () => {
    expect(parseCpuLine('cpu  100 5 50 1000 20 3 7 2 40 0')).toEqual({ idle: 1020, total: 1187 })
    expect(parseCpuLine('cpu0 100 5 50 1000 20 3 7 2 0 0')).toBeUndefined()
    expect(parseCpuLine('cpu  1 2 x 4')).toBeUndefined()
    expect(parseCpuLine(undefined)).toBeUndefined()
  })

  it('allows the spin while half a CPU is idle, stops it when the machine is busy, and a window with a spare CPU turns it back on', () => {
    const m = machine()
    const h = new CpuHeadroom({ readStat: m.read, cpus: 2, windowMs: 100 })
    let t = 0
    expect(h.allows(t, 0)).toBe(true) // first reading: no window yet
    m.window(10) // 1 CPU idle of 2
    expect(h.allows((t += 100), 0)).toBe(true)
    m.window(2) // 0.2 CPU idle: busy
    expect(h.allows((t += 100), 0)).toBe(false)
    expect(h.allows(t + 50, 0)).toBe(false) // within the window: the last answer, no read
    m.window(3)
    expect(h.allows((t += 100), 0)).toBe(false)
    m.window(8) // 0.8 CPU idle without the spin: spare
    expect(h.allows((t += 100), 0)).toBe(true)
  })

  it("counts the caller's own spin as idle, so a spin does not argue itself off", () => {
    const m = machine()
    const h = new CpuHeadroom({ readStat: m.read, cpus: 2, windowMs: 100 })
    let t = 0
    h.allows(t, 0)
    m.window(1) // 0.1 CPU idle, but the caller spun 80 ms of the 100
    expect(h.allows((t += 100), 80)).toBe(true)
    m.window(1) // the same without the spin: busy
    expect(h.allows((t += 100), 0)).toBe(false)
  })

  it(`goes one window without the spin every ${PROBE_EVERY}, and stays off when that window shows no spare CPU`, () => {
    const m = machine()
    const h = new CpuHeadroom({ readStat: m.read, cpus: 2, windowMs: 100 })
    let t = 0
    h.allows(t, 0)
    const answers: boolean[] = []
    for (let i = 0; i < PROBE_EVERY; i++) {
      m.window(2) // busy machine, but the caller's spin makes up the idle share: it looks fine while spinning
      answers.push(h.allows((t += 100), 60))
    }
    expect(answers.slice(0, -1).every((a) => a)).toBe(true)
    expect(answers.at(-1)).toBe(false) // the probe window
    m.window(2) // measured without the spin: 0.2 CPU idle
    expect(h.allows((t += 100), 0)).toBe(false)
    m.window(2)
    expect(h.allows((t += 100), 0)).toBe(false)
    m.window(12) // load gone
    expect(h.allows((t += 100), 0)).toBe(true)
  })

  it('a probe window with a spare CPU turns the spin straight back on', () => {
    const m = machine()
    const h = new CpuHeadroom({ readStat: m.read, cpus: 2, windowMs: 100 })
    let t = 0
    h.allows(t, 0)
    for (let i = 0; i < PROBE_EVERY; i++) {
      m.window(10)
      h.allows((t += 100), 0)
    }
    expect(h.allows(t + 1, 0)).toBe(false) // probing
    m.window(10)
    expect(h.allows((t += 100), 0)).toBe(true)
  })

  it('always allows where /proc/stat cannot be read (not Linux)', () => {
    const h = new CpuHeadroom({ readStat: () => undefined, cpus: 2 })
    for (let t = 0; t < 1000; t += 100) expect(h.allows(t, 0)).toBe(true)
  })
})
