/**
 * `graincluster` command line. Today: `quickstart` starts a node with the
 * sample grain and makes ask/tell round trips through the worker rings.
 */

import { parseArgs } from 'node:util'
import { GrainClusterError } from '../common/errors.js'
import { GrainNode } from './grain-node.js'

const HELP = `graincluster — clustered virtual actors for Node.js

Usage:
  graincluster quickstart [--workers N] [--keys N]   start a node with the sample
                                                      counter grain and round-trip calls
  graincluster --help                                 this text

Options:
  --workers N   grain worker threads (default: cores - 1, at least 1)
  --keys N      sample grain keys to call (default 4)
`

export async function runCli(argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { help: { type: 'boolean', short: 'h' }, workers: { type: 'string' }, keys: { type: 'string' } },
    })
  } catch (e) {
    process.stderr.write(`error: ${(e as Error).message}\n\n${HELP}`)
    return 2
  }
  const [command] = parsed.positionals
  if (parsed.values.help === true || command === undefined) {
    process.stdout.write(HELP)
    return command === undefined && parsed.values.help !== true ? 2 : 0
  }
  if (command !== 'quickstart') {
    process.stderr.write(`error: unknown command "${command}"\n\n${HELP}`)
    return 2
  }
  return quickstart(parsed.values.workers, parsed.values.keys)
}

async function quickstart(workersArg: string | undefined, keysArg: string | undefined): Promise<number> {
  const t0 = performance.now()
  const keys = keysArg === undefined ? 4 : Number(keysArg)
  if (!Number.isInteger(keys) || keys < 1 || keys > 10_000) {
    process.stderr.write(`error: --keys must be an integer in [1, 10000] (got ${keysArg})\n`)
    return 2
  }
  let node: GrainNode | undefined
  try {
    node = await GrainNode.start({
      grains: [new URL('../../examples/counter-grain.ts', import.meta.url)],
      ...(workersArg === undefined ? {} : { workers: Number(workersArg) }),
    })
    const o = node.options
    process.stdout.write(`node started: ${o.workers} worker thread(s), ${o.partitions} partitions, codec ${o.codec} (${(performance.now() - t0).toFixed(0)} ms)\n`)
    for (let i = 0; i < keys; i++) {
      const key = `sample-${i}`
      node.tell('counter', key, 'add', 1)
      const count = await node.ask<number>('counter', key, 'add', 41)
      const where = await node.ask<{ threadId: number }>('counter', key, 'whereAmI')
      process.stdout.write(`  counter/${key}: tell add(1) + ask add(41) -> ${count}   (worker thread ${where.threadId})\n`)
      if (count !== 42) throw new Error(`expected 42 from counter/${key}, got ${count}`)
    }
    const lat: number[] = []
    for (let i = 0; i < 2_000; i++) {
      const s = performance.now()
      await node.ask('counter', 'sample-0', 'get')
      lat.push(performance.now() - s)
    }
    lat.sort((a, b) => a - b)
    const us = (q: number): string => (lat[Math.floor(q * (lat.length - 1))]! * 1000).toFixed(1)
    process.stdout.write(`round trip OK: 2000 asks, p50 ${us(0.5)} µs, p99 ${us(0.99)} µs\n`)
    return 0
  } catch (e) {
    const err = GrainClusterError.is(e) ? `${e.code}: ${e.reason}` : String(e)
    process.stderr.write(`quickstart failed: ${err}\nhint: run \`npm ci\` first; \`npm test\` checks the runtime on this machine.\n`)
    return 1
  } finally {
    await node?.close()
    process.stdout.write(`node stopped (${(performance.now() - t0).toFixed(0)} ms total)\n`)
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli.ts') === true) {
  process.exitCode = await runCli(process.argv.slice(2))
}
