/**
 * The benchmark suite must keep running: `--quick` executes every scope with
 * small counts and its own correctness checks (no lost tells, round-trips,
 * frame order). Speed targets are not asserted here; they live in the
 * benchmark output.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

describe('native-free-bench --quick', () => {
  it('runs every scope and passes its correctness checks', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'native-free-bench/run.ts', '--quick', '--json'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 150_000,
      env: { ...process.env, MSGPACKR_NATIVE_ACCELERATION_DISABLED: 'true' },
    })
    // The failing scope's error is printed early in stderr, far from its tail:
    // show the failures from the JSON summary when there is one.
    let summary: { results: { scope: string; rows: unknown[] }[]; failures: { scope: string; error: string }[] } | undefined
    try {
      summary = JSON.parse(r.stdout) as typeof summary
    } catch {
      summary = undefined
    }
    const why = summary?.failures.length ? summary.failures.map((f) => `${f.scope}: ${f.error}`).join('\n') : r.stderr.slice(-2000)
    expect(r.status, why).toBe(0)
    if (!summary) throw new Error(`no JSON summary on stdout: ${r.stdout.slice(0, 500)}`)
    expect(summary.failures).toEqual([])
    expect(summary.results.map((x) => x.scope)).toEqual(['ring', 'envelope', 'codec', 'e2e', 'activation', 'gossip', 'membership', 'remote', 'placement', 'http'])
    for (const x of summary.results) expect(x.rows.length, x.scope).toBeGreaterThan(0)
  })
})

describe('native-free-bench --scope pubsub --quick (on demand, so not in the run above)', () => {
  it('runs and passes its delivery checks', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'native-free-bench/run.ts', '--scope', 'pubsub', '--quick', '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 90_000 })
    expect(r.status, r.stderr.slice(-2000)).toBe(0)
    const summary = JSON.parse(r.stdout) as { results: { scope: string; rows: unknown[] }[]; failures: unknown[] }
    expect(summary.failures).toEqual([])
    expect(summary.results.map((x) => x.scope)).toEqual(['pubsub'])
    expect(summary.results[0]!.rows.length).toBeGreaterThan(0)
  })
})
