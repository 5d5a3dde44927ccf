/** The `graincluster` command as a user runs it: a real child process. */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const BIN = fileURLToPath(new URL('../../bin/graincluster.mjs', import.meta.url))

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('graincluster CLI', () => {
  it('quickstart starts a node and round-trips calls to the sample grain', () => {
    const r = run(['quickstart', '--keys', '3'])
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/node started: \d+ worker thread/)
    expect(r.stdout.match(/-> 42/g)).toHaveLength(3)
    expect(r.stdout).toMatch(/round trip OK: 2000 asks, p50 [\d.]+ µs/)
    expect(r.stdout).toContain('node stopped')
  })

  it('prints help with exit code 0 and refuses unknown commands with 2', () => {
    const help = run(['--help'])
    expect(help.status).toBe(0)
    expect(help.stdout).toContain('graincluster quickstart')
    const bad = run(['frobnicate'])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain('unknown command "frobnicate"')
    const badKeys = run(['quickstart', '--keys', 'lots'])
    expect(badKeys.status).toBe(2)
    expect(badKeys.stderr).toContain('--keys')
  })
})
