/**
 * The `graincluster` command line: `node` (one node from config) and
 * `quickstart` (a local N-node cluster as real processes). Exit codes: 0 ok,
 * 1 runtime failure, 2 usage or configuration error. Data on stdout, logs
 * and progress on stderr.
 */

import { type ParseArgsConfig, parseArgs } from 'node:util'
import { toGrainClusterError } from '../common/errors.js'
import { CONFIG_FILE_ENV, CONFIG_FILE_FLAG, SETTINGS } from './config.js'
import { packageVersion } from './environment.js'
import type { CliIo } from './node-command.js'

const MAX_QUICKSTART_NODES = 16

const MAIN_HELP = `graincluster — clustered virtual actors (grains) for Node.js

Usage:
  graincluster quickstart [--nodes N] [--keep]   a local N-node cluster (default 2) as real
                                                  processes, with cross-node round trips
  graincluster node [--config file] [flags]       run one node from a config file, env, flags
  graincluster <command> --help                   help for a command
  graincluster --version                          print the version

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
`

const QUICKSTART_HELP = `Usage: graincluster quickstart [--nodes N] [--keep]

Starts N \`graincluster node\` processes on 127.0.0.1 (free ports, every node a
seed, a fresh cluster name and secret per run), waits until each sees all N Up,
prints the member list, then asks a sample counter grain across nodes in both
directions (node i -> a key owned by node i+1) and prints the responding PIDs.
Writes RUN.md (commands, redacted config, environment, ports, seeds, PIDs,
URLs, clean-up) to a new directory under the OS temp dir and prints its path.
Stops every process it started, also on Ctrl-C.

Options:
  --nodes N   nodes to start, 2..${MAX_QUICKSTART_NODES} (default 2)
  --keep      keep the node logs next to RUN.md (they are always kept on failure)
  -h, --help  this text
`

function nodeHelp(): string {
  const rows = SETTINGS.map((s) => {
    const flag = s.kind === 'bool' ? `--${s.flag} / --no-${s.flag}` : `--${s.flag} <${s.kind === 'list' ? 'a,b' : s.kind === 'int' ? 'n' : s.kind === 'json' ? 'json' : 'value'}>`
    return `  ${flag.padEnd(34)} ${s.env.padEnd(36)} ${s.path}\n      ${s.doc}; default: ${s.defaultText}`
  })
  return `Usage: graincluster node [--config file.json] [flags]

Runs one node. Settings merge defaults < config file < GRAINCLUSTER_* env
vars < flags, and are validated before anything starts: a missing or invalid
setting is refused (exit 2) with every problem named and how to set it.
Required: port, seeds, cluster name, secret. SIGINT/SIGTERM leave the cluster
gracefully. Sample file: examples/graincluster.config.json.

  ${`--${CONFIG_FILE_FLAG} <file>`.padEnd(34)} ${CONFIG_FILE_ENV.padEnd(36)} JSON file with sections node, cluster, http
${rows.join('\n')}
  --control                          JSON-line control over stdin/stdout (used by quickstart
                                     and tests); the node exits when stdin closes
  -h, --help                         this text
`
}

function nodeParseOptions(): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = {
    help: { type: 'boolean', short: 'h' },
    [CONFIG_FILE_FLAG]: { type: 'string' },
    control: { type: 'boolean' },
  }
  for (const s of SETTINGS) options[s.flag] = { type: s.kind === 'bool' ? 'boolean' : 'string' }
  return options
}

function usageError(io: CliIo, message: string, help: string): number {
  io.stderr.write(`graincluster: ${message}\n\n${help}`)
  return 2
}

export async function runCli(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined) return usageError(io, 'a command is required', MAIN_HELP)
  if (command === '--help' || command === '-h' || command === 'help') {
    io.stdout.write(MAIN_HELP)
    return 0
  }
  if (command === '--version' || command === '-v') {
    io.stdout.write(`${packageVersion()}\n`)
    return 0
  }
  try {
    if (command === 'quickstart') {
      let parsed
      try {
        parsed = parseArgs({ args: [...rest], options: { help: { type: 'boolean', short: 'h' }, nodes: { type: 'string' }, keep: { type: 'boolean' } }, strict: true })
      } catch (e) {
        return usageError(io, (e as Error).message, QUICKSTART_HELP)
      }
      if (parsed.values.help === true) {
        io.stdout.write(QUICKSTART_HELP)
        return 0
      }
      const nodes = parsed.values.nodes === undefined ? 2 : Number(parsed.values.nodes)
      if (!Number.isInteger(nodes) || nodes < 2 || nodes > MAX_QUICKSTART_NODES) {
        return usageError(io, `--nodes must be an integer in [2, ${MAX_QUICKSTART_NODES}] (got ${parsed.values.nodes})`, QUICKSTART_HELP)
      }
      // Loaded on demand: help and usage errors stay fast, and the quickstart parent never loads the runtime.
      const { runQuickstart } = await import('./quickstart.js')
      return await runQuickstart({ nodes, keep: parsed.values.keep === true, argv: ['quickstart', ...rest] }, io)
    }
    if (command === 'node') {
      let parsed
      try {
        parsed = parseArgs({ args: [...rest], options: nodeParseOptions(), strict: true, allowNegative: true })
      } catch (e) {
        return usageError(io, (e as Error).message, nodeHelp())
      }
      if (parsed.values.help === true) {
        io.stdout.write(nodeHelp())
        return 0
      }
      const { runNodeCommand } = await import('./node-command.js')
      return await runNodeCommand(parsed.values as Record<string, string | boolean | undefined>, io)
    }
  } catch (e) {
    const err = toGrainClusterError(e)
    io.stderr.write(`graincluster ${command}: ${err.code}: ${err.reason}\nhint: run \`npm install\`; \`npm test\` checks the runtime on this machine\n`)
    return 1
  }
  return usageError(io, `unknown command "${command}"`, MAIN_HELP)
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('/cli.ts') === true) {
  process.exitCode = await runCli(process.argv.slice(2))
}
