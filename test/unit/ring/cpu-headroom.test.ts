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

/** A CpuHeadroom on the fake machine, past its first reading; `window` adds 100 ms and asks it. */
function started() {
  const m = machine()
  const h = new CpuHeadroom({ readStat: m.read, cpus: 2, windowMs: 100 })
  let t = 0
  h.allows(t, 0)
  return {
    h,
    now: () => t,
    /** One more window with `idleTicks` of its 20 ticks idle, the caller having spun `spunMs` of it. */
    window(idleTicks: number, spunMs = 0): boolean {
      m.window(idleTicks)
      return h.allows((t += 100), spunMs)
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
    expect(h.allows(0, 0)).toBe(true) // first reading: no window yet
    const s = started()
    expect(s.window(10)).toBe(true) // 1 CPU idle of 2
    expect(s.window(2)).toBe(false) // 0.2 CPU idle: busy
    expect(s.h.allows(s.now() + 50, 0)).toBe(false) // within the window: the last answer, no read
    expect(s.window(3)).toBe(false)
    expect(s.window(8)).toBe(true) // 0.8 CPU idle without the spin: spare
  })

  it("counts the caller's own spin as idle, so a spin does not argue itself off", () => {
    const s = started()
    expect(s.window(1, 80)).toBe(true) // 0.1 CPU idle, but the caller spun 80 ms of the 100
    expect(s.window(1)).toBe(false) // the same without the spin: busy
  })

  it(`goes one window without the spin every ${PROBE_EVERY}, and stays off when that window shows no spare CPU`, () => {
    const s = started()
    // A busy machine, but the caller's spin makes up the idle share: it looks fine while spinning.
    const answers = Array.from({ length: PROBE_EVERY }, () => s.window(2, 60))
    expect(answers.slice(0, -1).every((a) => a)).toBe(true)
    expect(answers.at(-1)).toBe(false) // the probe window
    expect(s.window(2)).toBe(false) // measured without the spin: 0.2 CPU idle
    expect(s.window(2)).toBe(false)
    expect(s.window(12)).toBe(true) // load gone
  })

  it('a probe window with a spare CPU turns the spin straight back on', () => {
    const s = started()
    for (let i = 0; i < PROBE_EVERY; i++) s.window(10)
    expect(s.h.allows(s.now() + 1, 0)).toBe(false) // probing
    expect(s.window(10)).toBe(true)
  })

  it('always allows where /proc/stat cannot be read (not Linux)', () => {
    const h = new CpuHeadroom({ readStat: () => undefined, cpus: 2 })
    for (let t = 0; t < 1000; t += 100) expect(h.allows(t, 0)).toBe(true)
  })
})
