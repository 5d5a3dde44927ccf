/**
 * "No native addons anywhere": a child process runs every runtime path that
 * loads a dependency (see fixtures/no-native/workload.ts) and lists the
 * `*.node` shared objects mapped into it. Optional native dependencies are
 * installed by npm (piscina's @napi-rs/nice, msgpackr's msgpackr-extract for
 * the codec benchmark), so this checks that none is ever loaded.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const WORKLOAD = fileURLToPath(new URL('../fixtures/no-native/workload.ts', import.meta.url))

interface Report {
  results: Record<string, unknown>
  native: string[]
  loadedOnPurpose: 'yes' | 'no' | 'unavailable'
}

function run(env: Record<string, string> = {}): Report {
  const r = spawnSync(process.execPath, ['--import', 'tsx', WORKLOAD], { encoding: 'utf8', timeout: 90_000, env: { ...process.env, ...env } })
  expect(r.status, `workload failed: ${r.stderr}`).toBe(0)
  const line = r.stdout.trim().split('\n').at(-1)!
  return JSON.parse(line) as Report
}

describe.runIf(existsSync('/proc/self/maps'))('native addons', () => {
  it('none is loaded by workers, the piscina pool, the transport, the HTTP/WebSocket front or metrics', () => {
    const r = run()
    expect(r.results).toEqual({ local: 2, stateless: 6, remote: 5, http: 5, ws: 5, metrics: true })
    expect(r.native).toEqual([])
  })

  it('the check sees an addon that is loaded', () => {
    const r = run({ LOAD_NATIVE: '1' })
    if (r.loadedOnPurpose === 'yes') expect(r.native.some((p) => p.includes('msgpackr-extract'))).toBe(true)
    else expect(r.loadedOnPurpose).toBe('unavailable') // the optional package is not built for this platform: nothing to load
  })
})
