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
    expect(r.status, r.stderr.slice(-2000)).toBe(0)
    const summary = JSON.parse(r.stdout) as { results: { scope: string; rows: unknown[] }[]; failures: unknown[] }
    expect(summary.failures).toEqual([])
    expect(summary.results.map((x) => x.scope)).toEqual(['ring', 'envelope', 'codec', 'e2e', 'activation', 'gossip', 'membership', 'remote', 'placement', 'http'])
    for (const x of summary.results) expect(x.rows.length, x.scope).toBeGreaterThan(0)
  })
})
