/** What the start-up log and the quickstart run log record about the machine. */

import { readFileSync } from 'node:fs'
import { arch, availableParallelism, cpus, platform, release, totalmem } from 'node:os'

export interface EnvironmentInfo {
  graincluster: string
  node: string
  os: string
  cores: number
  cpu: string
  memoryGiB: number
}

let version: string | undefined

/** The package version (package.json sits two levels up from both src/node and dist/node). */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
    } catch {
      version = 'unknown'
    }
  }
  return version
}

export function environmentInfo(): EnvironmentInfo {
  return {
    graincluster: packageVersion(),
    node: process.version,
    os: `${platform()} ${release()} ${arch()}`,
    cores: availableParallelism(),
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  }
}

export function formatEnvironment(e: EnvironmentInfo): string {
  return `graincluster ${e.graincluster}, Node ${e.node}, ${e.os}, ${e.cores} cores (${e.cpu}), ${e.memoryGiB} GiB`
}
