/** The machine and build a run was measured on, recorded with every result. */

import { execFileSync } from 'node:child_process'
import { arch, availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os'

export interface BenchEnv {
  node: string
  v8: string
  platform: string
  arch: string
  osRelease: string
  cpuModel: string
  /** Logical CPUs (os.cpus().length). */
  cores: number
  availableParallelism: number
  totalMemMiB: number
  /** 1-minute load average when the run started (noise indicator). */
  loadAvg1m: number
  /** Commit of the working tree, `+dirty` when it has local changes. */
  commit: string
  argv: string[]
}

function gitCommit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return dirty === '' ? head : `${head}+dirty`
  } catch {
    return 'unknown'
  }
}

export function benchEnv(argv: readonly string[]): BenchEnv {
  const c = cpus()
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: platform(),
    arch: arch(),
    osRelease: release(),
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    availableParallelism: availableParallelism(),
    totalMemMiB: Math.round(totalmem() / 2 ** 20),
    loadAvg1m: loadavg()[0] ?? 0,
    commit: gitCommit(),
    argv: [...argv],
  }
}
