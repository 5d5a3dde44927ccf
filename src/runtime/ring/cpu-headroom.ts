/**
 * Whether the machine has a spare CPU for a spinning thread, from the
 * system-wide idle time in /proc/stat (Linux; elsewhere it always answers
 * yes, which is the behaviour without it).
 *
 * Why: a spin trades a core for wake-up latency, a good trade while cores
 * are idle. Where all cores are busy (the HTTP front beside its load
 * generator on 2 vCPUs), the spinning worker takes the core the main
 * thread and the clients need: /rpc at peak ran at 0.59-0.78x the bare
 * route with the worker's adaptive spin, 0.79-1.04x with this gate. A
 * remote ask needs the spin (p50 ~80 us with it, ~300 us without) and
 * leaves a core idle. Per-thread signals did not tell the two apart
 * (run-queue waits per switch were alike); the machine's idle time does.
 * Without headroom the pump keeps its minimum spin (spinMicros) and drops
 * the adaptive extension.
 *
 * The spinning thread's own spin counts as idle (`spunMs`): it would be
 * free if the thread parked, so a spin does not argue itself off.
 */

import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'

export interface CpuHeadroomOptions {
  /** How often the decision is refreshed, ms (/proc/stat counts in 10 ms ticks). Default 100. */
  windowMs?: number
  /**
   * Spin while at least this many CPUs' worth of time was idle in the last
   * window, the spinner's own spin counted idle. Default 0.5. Measured with
   * the spin off, the HTTP front at peak beside its load generator left
   * 0-0.2 CPUs idle of 2, a sequential remote ask 0.6-1 CPU.
   */
  minIdleCpus?: number
  /** Source of the aggregate `cpu` line (tests). Default: /proc/stat. */
  readStat?: () => string | undefined
  /** CPUs the aggregate line counts (tests). Default: os.cpus().length. */
  cpus?: number
}

const TICK_MS = 10 // USER_HZ = 100 on Linux

export class CpuHeadroom {
  readonly #windowMs: number
  /** Idle share (own spin counted idle) under which the spin stops, and at which a window without it turns it back on. */
  readonly #share: number
  readonly #read: () => string | undefined
  /** All the machine's CPUs: /proc/stat's aggregate line counts them all, whatever this process's affinity. */
  readonly #cpus: number
  #from = Number.NEGATIVE_INFINITY
  #idle0 = 0
  #total0 = 0
  #spun = 0
  #allow = true
  #probing = false
  #sinceProbe = 0
  #works = true

  constructor(o: CpuHeadroomOptions = {}) {
    this.#windowMs = o.windowMs ?? 100
    this.#cpus = Math.max(1, o.cpus ?? cpus().length)
    this.#share = Math.min(1, (o.minIdleCpus ?? 0.5) / this.#cpus)
    this.#read = o.readStat ?? readProcStat
  }

  /** Whether to spin now; `spunMs` is how long the caller has spun since the last call (counted as idle). */
  allows(nowMs: number, spunMs: number): boolean {
    if (!this.#works) return true
    this.#spun += spunMs
    if (nowMs - this.#from >= this.#windowMs) this.#endWindow(nowMs)
    return this.#allow && !this.#probing
  }

  #endWindow(nowMs: number): void {
    const t = parseCpuLine(this.#read())
    if (t === undefined) {
      this.#works = false
      this.#allow = true
      this.#probing = false
      return
    }
    const total = t.total - this.#total0
    // Ticks of all CPUs; a window shorter than one tick per CPU says nothing: keep the last answer.
    if (this.#from !== Number.NEGATIVE_INFINITY && total >= this.#cpus) {
      const share = (t.idle - this.#idle0 + Math.min(this.#spun / TICK_MS, total)) / total
      // A window without the spin (off, or a probe) shows the others' demand in full.
      const withoutSpin = this.#probing || !this.#allow
      this.#allow = share >= this.#share
      this.#probing = false
      if (!this.#allow || withoutSpin) this.#sinceProbe = 0
      else if (++this.#sinceProbe >= PROBE_EVERY) {
        // With the spin on, the spin's own time counts as idle, but threads
        // it kept waiting do not show their demand in full (the HTTP front
        // at peak read 0.27-0.34 spinning, 0-0.1 not). Every so often one
        // window goes without it to measure that demand.
        this.#probing = true
      }
    }
    this.#from = nowMs
    this.#idle0 = t.idle
    this.#total0 = t.total
    this.#spun = 0
  }
}

/** Windows with the spin on between two windows without it. */
export const PROBE_EVERY = 20

function readProcStat(): string | undefined {
  try {
    const s = readFileSync('/proc/stat', 'latin1')
    const nl = s.indexOf('\n')
    return nl < 0 ? s : s.slice(0, nl)
  } catch {
    return undefined
  }
}

/** The aggregate `cpu` line: idle (idle + iowait) and total ticks. */
export function parseCpuLine(line: string | undefined): { idle: number; total: number } | undefined {
  if (line === undefined || !line.startsWith('cpu ')) return undefined
  const f = line.slice(4).trim().split(/\s+/).map(Number)
  if (f.length < 4 || f.some((x) => !Number.isFinite(x))) return undefined
  // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
  return { idle: f[3]! + (f[4] ?? 0), total }
}
