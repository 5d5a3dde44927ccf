/**
 * Benchmark runner (STYLE.md §8): one scope or all of them, each measured
 * against its baseline in the same run.
 *
 *   tsx native-free-bench/run.ts [--scope ring|envelope|codec|e2e|activation|gossip|membership|remote|placement|http|all|failover|flood|pubsub]
 *                                [--json] [--quick] [--spin <µs>]
 *
 * Prints the environment and one table per scope, and writes
 * bench-results/<scope>.json plus bench-results/summary.json (the scopes of
 * this invocation). --json prints the summary JSON on stdout and everything
 * else on stderr, so `--json | jq` works. --quick shrinks every count so the
 * whole suite finishes in well under a minute (smoke test). --spin passes
 * spinMicros to GrainNode in the e2e scope. Exit code 1 if any scope failed
 * (a verification error, e.g. a lost message); missed performance targets
 * are reported, not failed.
 */

// Before any scope module loads: msgpackr must never load its native addon.
process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED = 'true'

import { Console } from 'node:console'
import { mkdir, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { benchEnv } from './lib/env.js'
import { ON_DEMAND_SCOPES, printScope, SCOPES, type BenchOptions, type ScopeFailure, type ScopeModule, type ScopeName, type ScopeResult } from './lib/report.js'
import { DEFAULT_SPIN_MICROS } from '../src/node/grain-node.js'

const LOADERS: Record<ScopeName, () => Promise<ScopeModule>> = {
  ring: () => import('./ring.bench.js'),
  envelope: () => import('./envelope.bench.js'),
  codec: () => import('./codec.bench.js'),
  e2e: () => import('./e2e.bench.js'),
  activation: () => import('./activation.bench.js'),
  gossip: () => import('./gossip.bench.js'),
  remote: () => import('./remote.bench.js'),
  membership: () => import('./membership.bench.js'),
  placement: () => import('./placement.bench.js'),
  failover: () => import('./failover.bench.js'),
  flood: () => import('./flood.bench.js'),
  http: () => import('./http.bench.js'),
  pubsub: () => import('./pubsub.bench.js'),
}

const RESULTS_DIR = new URL('../bench-results/', import.meta.url)

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: tsx native-free-bench/run.ts [--scope ${[...SCOPES, 'all', ...ON_DEMAND_SCOPES].join('|')}] [--json] [--quick] [--spin <µs>]\n`)
  process.exit(2)
}

async function main(): Promise<number> {
  let args
  try {
    args = parseArgs({
      options: {
        scope: { type: 'string', default: 'all' },
        json: { type: 'boolean', default: false },
        quick: { type: 'boolean', default: false },
        spin: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (e) {
    usage((e as Error).message)
  }
  if (args.help) usage('graincluster benchmarks')
  const scopeArg = args.scope
  const scopes: ScopeName[] = scopeArg === 'all' ? [...SCOPES] : ([...SCOPES, ...ON_DEMAND_SCOPES] as readonly string[]).includes(scopeArg) ? [scopeArg as ScopeName] : usage(`unknown scope "${scopeArg}"`)
  // Default: the node's own default, so the table shows what users get.
  const spinMicros = args.spin === undefined ? DEFAULT_SPIN_MICROS : Number(args.spin)
  if (!Number.isInteger(spinMicros) || spinMicros < 0 || spinMicros > 10_000) usage(`--spin must be an integer number of µs in [0, 10000] (got ${args.spin})`)

  // In --json mode stdout carries only the JSON document.
  const out = args.json ? new Console({ stdout: process.stderr, stderr: process.stderr }) : console
  const env = benchEnv(process.argv.slice(2))
  out.log(`graincluster benchmarks ${args.quick ? '(quick)' : '(full)'}: scopes ${scopes.join(', ')}`)
  out.table([
    {
      node: env.node,
      v8: env.v8,
      cpu: env.cpuModel,
      cores: env.cores,
      parallelism: env.availableParallelism,
      'mem MiB': env.totalMemMiB,
      'load 1m': env.loadAvg1m.toFixed(2),
      os: `${env.platform}-${env.arch} ${env.osRelease}`,
      commit: env.commit,
    },
  ])

  const o: BenchOptions = { quick: args.quick, spinMicros, log: (line) => process.stderr.write(`  · ${line}\n`) }
  const results: ScopeResult[] = []
  const failures: ScopeFailure[] = []
  await mkdir(RESULTS_DIR, { recursive: true })
  const suiteStart = performance.now()
  for (const s of scopes) {
    const startedAt = new Date().toISOString()
    const t0 = performance.now()
    try {
      const mod = await LOADERS[s]()
      const r = await mod.run(o)
      results.push(r)
      printScope(out, r)
      await writeFile(new URL(`${s}.json`, RESULTS_DIR), JSON.stringify({ env, quick: args.quick, result: r }, null, 2) + '\n')
    } catch (e) {
      const f: ScopeFailure = { scope: s, error: e instanceof Error ? (e.stack ?? e.message) : String(e), startedAt, durationMs: performance.now() - t0 }
      failures.push(f)
      out.error(`\n=== ${s}: FAILED\n${f.error}`)
      await writeFile(new URL(`${s}.json`, RESULTS_DIR), JSON.stringify({ env, quick: args.quick, failure: f }, null, 2) + '\n')
    }
  }
  const summary = {
    env,
    quick: args.quick,
    spinMicros,
    scopes,
    durationMs: performance.now() - suiteStart,
    results,
    failures,
    targets: results.flatMap((r) => r.targets.map((t) => ({ scope: r.scope, ...t }))),
  }
  await writeFile(new URL('summary.json', RESULTS_DIR), JSON.stringify(summary, null, 2) + '\n')
  const missed = summary.targets.filter((t) => !t.met).length
  out.log(
    `\n${results.length}/${scopes.length} scope(s) ok, ${failures.length} failed; targets met ${summary.targets.length - missed}/${summary.targets.length}; ` +
      `${(summary.durationMs / 1000).toFixed(1)} s; results in bench-results/`,
  )
  if (args.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n')
  return failures.length === 0 ? 0 : 1
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
    process.exitCode = 1
  },
)
