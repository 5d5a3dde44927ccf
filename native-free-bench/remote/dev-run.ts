/**
 * Run the remote scope alone during development (the runner registers it
 * as --scope remote):
 *
 *   npx tsx native-free-bench/remote/dev-run.ts [--quick] [--spin <µs>]
 */

import { DEFAULT_SPIN_MICROS } from '../../src/node/grain-node.js'
import { printScope } from '../lib/report.js'
import { run } from '../remote.bench.js'

process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED = 'true'

const argv = process.argv.slice(2)
const quick = argv.includes('--quick')
const spinAt = argv.indexOf('--spin')
const spinMicros = spinAt < 0 ? DEFAULT_SPIN_MICROS : Number(argv[spinAt + 1])
if (!Number.isInteger(spinMicros) || spinMicros < 0) throw new Error(`--spin needs an integer number of µs (got ${argv[spinAt + 1]})`)
const r = await run({ quick, spinMicros, log: (line) => process.stderr.write(`  · ${line}\n`) })
printScope(console, r)
