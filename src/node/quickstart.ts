/**
 * `graincluster quickstart`: N real `graincluster node --control` processes
 * on 127.0.0.1 (free ports, every node a seed, fresh cluster name and secret
 * per run), wait until each sees all N Up, then ask/reply round trips across
 * nodes in both directions (node i → a key owned by node i+1, cyclically),
 * print the responding PIDs, write RUN.md, and stop everything it started.
 *
 * Children run the same entry as this process (`process.execPath` with its
 * execArgv and argv[1]), so this works under tsx, through bin/ and from dist.
 */

import { randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { reasonOf } from '../common/errors.js'
import { parsePid } from '../common/pid.js'
import { childProcessEnv, terminalEnv } from './config.js'
import type { AskReply, MemberInfo } from './control-protocol.js'
import { environmentInfo } from './environment.js'
import type { CliIo } from './node-command.js'
import { NodeProcess } from './node-process.js'
import { createProgress } from './progress.js'
import { type RoundTrip, type RunLogNode, renderRunLog } from './run-log.js'

export interface QuickstartOptions {
  nodes: number
  keep: boolean
  /** Script the children run; default process.argv[1] (this CLI). */
  entry?: string
  /** The quickstart's own arguments, for the run log. */
  argv: readonly string[]
}

const HOST = '127.0.0.1'
const UP_TIMEOUT_MS = 30_000 // 30 s: process start + worker threads + join, on a loaded 2-core box
const CONVERGE_TIMEOUT_MS = 20_000 // 20 s
const CALL_TIMEOUT_MS = 10_000 // 10 s
const STOP_TIMEOUT_MS = 5_000 // 5 s, then SIGKILL
const PORT_ATTEMPTS = 3
const KEY_SEARCH_LIMIT = 10_000
const KIND = 'counter'

class StepError extends Error {
  constructor(
    message: string,
    readonly hint: string,
  ) {
    super(message)
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.on('error', reject)
    srv.listen(0, HOST, () => {
      const addr = srv.address()
      srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0))
    })
  })
}

async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>()
  for (let i = 0; i < n * 10 && out.size < n; i++) out.add(await freePort())
  if (out.size < n) throw new StepError(`could not find ${n} free ports on ${HOST}`, 'free some ports or use fewer --nodes')
  return [...out]
}

function shellQuote(a: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`
}

function lastLines(path: string, n: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-n).map((l) => `    ${l}`).join('\n')
  } catch {
    return '    (no log)'
  }
}

export async function runQuickstart(o: QuickstartOptions, io: CliIo): Promise<number> {
  const t0 = performance.now()
  const startedAt = new Date().toISOString()
  const term = terminalEnv()
  const progress = createProgress({ stream: io.stderr, ci: term.ci, color: term.color })
  const out = (s: string): void => void io.stdout.write(`${s}\n`)
  const steps: { name: string; ms: number }[] = []
  let stepT = performance.now()
  const step = (name: string): void => {
    const now = performance.now()
    steps.push({ name, ms: now - stepT })
    stepT = now
  }

  // mkdtemp: a unique directory per run, so concurrent or repeated runs never share files.
  const dir = mkdtempSync(join(tmpdir(), 'graincluster-quickstart-'))
  const runId = basename(dir).slice('graincluster-quickstart-'.length)
  const clusterName = `quickstart-${runId}`
  const secret = randomBytes(24).toString('base64url')
  const entry = o.entry ?? process.argv[1]!
  // --inspect in the parent would make every child fight for the same debugger port.
  const execArgv = process.execArgv.filter((a) => !a.startsWith('--inspect'))
  const selfCommand = [process.execPath, ...execArgv, entry, ...o.argv].map(shellQuote).join(' ')

  let nodes: NodeProcess[] = []
  let logFds: number[] = []
  let seeds: string[] = []
  let members: { name: string; authority: string; nodeId: string; status: string }[] = []
  const roundTrips: RoundTrip[] = []
  let failure: StepError | undefined
  let interrupted: NodeJS.Signals | undefined
  const nodeArgs = (port: number): string[] => ['node', '--control', '--host', HOST, '--port', String(port), '--seeds', seeds.join(','), '--cluster-name', clusterName, '--workers', '1', '--failure-detector', 'test', '--http-port', '0']
  const logPath = (i: number): string => join(dir, `node-${i}.log`)

  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop(STOP_TIMEOUT_MS)))
    for (const fd of logFds) closeSync(fd)
    logFds = []
  }
  // Ctrl-C / SIGTERM: stop the children first, then report; a second signal exits at once.
  let stopping: Promise<void> | undefined
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted !== undefined) process.exit(130)
    interrupted = sig
    progress.fail(`interrupted (${sig}): stopping ${nodes.length} node process(es)`)
    stopping = stopAll()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    for (let attempt = 1; ; attempt++) {
      progress.start(`starting ${o.nodes} node processes on ${HOST} (cluster ${clusterName})`)
      const ports = await freePorts(o.nodes)
      seeds = ports.map((p) => `${HOST}:${p}`)
      logFds = ports.map((_, i) => openSync(logPath(i + 1), 'w'))
      nodes = ports.map(
        (port, i) =>
          new NodeProcess({
            index: i + 1,
            port,
            command: process.execPath,
            args: [...execArgv, entry, ...nodeArgs(port)],
            // The secret travels in the environment: command lines show in `ps`.
            env: childProcessEnv({ GRAINCLUSTER_SECRET: secret }),
            stderrFd: logFds[i]!,
          }),
      )
      try {
        await Promise.all(nodes.map((n) => n.waitUp(UP_TIMEOUT_MS)))
        break
      } catch (e) {
        // Free ports are picked, then released and bound by the child: another
        // process can take one in between. Try again with new ones.
        const taken = nodes.some((n) => n.error !== undefined && /EADDRINUSE/.test(n.error.reason))
        if (interrupted !== undefined || !taken || attempt >= PORT_ATTEMPTS) {
          const bad = nodes.find((n) => n.error !== undefined || n.exit !== undefined) ?? nodes.find((n) => n.up === undefined)
          const logs = bad === undefined ? '' : `\n  last lines of ${logPath(bad.index)}:\n${lastLines(logPath(bad.index), 8)}`
          throw new StepError(`${(e as Error).message}${logs}`, 'run `npm install` first; the node logs above say why a node did not start; `npm test` checks the runtime on this machine')
        }
        progress.note(`a port was taken meanwhile; retrying with new ports (attempt ${attempt + 1} of ${PORT_ATTEMPTS})`)
        await stopAll()
      }
    }
    step('start node processes')
    progress.done(`${o.nodes} node processes started (${nodes.map((n) => `${n.name} pid ${n.pid}`).join(', ')})`)

    progress.start(`waiting until every node sees all ${o.nodes} members Up`)
    const deadline = performance.now() + CONVERGE_TIMEOUT_MS
    let views: MemberInfo[][] = []
    for (let i = 0; ; i++) {
      if (interrupted !== undefined) throw new StepError(`interrupted by ${interrupted}`, 'run it again')
      views = await Promise.all(nodes.map((n) => n.request<MemberInfo[]>({ cmd: 'members' }, CALL_TIMEOUT_MS)))
      if (views.every((v) => v.filter((m) => m.status === 'up').length === o.nodes)) break
      if (performance.now() > deadline) {
        const seen = views.map((v, j) => `${nodes[j]!.name} sees ${v.map((m) => `${m.authority}=${m.status}`).join(', ')}`).join('; ')
        throw new StepError(`the nodes did not all see each other Up within ${CONVERGE_TIMEOUT_MS} ms after ${i + 1} checks: ${seen}`, `look at the node logs in ${dir} (run with --keep); loopback traffic must not be blocked`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    members = views.flatMap((v, j) => v.map((m) => ({ name: nodes[j]!.name, ...m })))
    step('cluster formed (all members Up)')
    progress.done(`cluster formed: every node sees ${o.nodes} members Up`)

    const byAuthority = new Map(nodes.map((n) => [n.up!.authority, n]))
    out(`cluster "${clusterName}" is Up with ${o.nodes} nodes (seeds ${seeds.join(',')}):`)
    for (const m of views[0]!) {
      const n = byAuthority.get(m.authority)
      out(`  ${n?.name ?? '?'}  ${m.authority}  ${m.status}  node ${m.nodeId}  pid ${n?.pid ?? '?'}${n?.up?.httpUrl ? `  http ${n.up.httpUrl}` : ''}`)
    }

    progress.start('ask/reply round trips across nodes (both directions)')
    out('round trips across nodes (each caller asks a counter grain that lives on the other node):')
    for (let i = 0; i < nodes.length; i++) {
      const from = nodes[i]!
      const to = nodes[(i + 1) % nodes.length]!
      const found = await from.request<{ key: string; pid: string }>({ cmd: 'find-key', kind: KIND, owner: to.up!.authority, prefix: `${runId}-`, limit: KEY_SEARCH_LIMIT }, CALL_TIMEOUT_MS)
      const add = await from.request<AskReply>({ cmd: 'ask', kind: KIND, key: found.key, method: 'add', payload: 1, timeoutMs: CALL_TIMEOUT_MS }, CALL_TIMEOUT_MS + 1_000)
      const where = await from.request<AskReply>({ cmd: 'ask', kind: KIND, key: found.key, method: 'whereAmI', timeoutMs: CALL_TIMEOUT_MS }, CALL_TIMEOUT_MS + 1_000)
      const served = where.value as { processId: number; threadId: number }
      const pid = parsePid(add.pid)
      const hint = 'the grain call crossed the cluster transport; the node logs (run with --keep) show association and delivery errors'
      if (add.value !== 1) throw new StepError(`${from.name} → ${to.name}: counter/${found.key} add(1) returned ${JSON.stringify(add.value)}, expected 1`, hint)
      if (pid.authority !== to.up!.authority || pid.nodeId !== to.up!.nodeId) throw new StepError(`${from.name} → ${to.name}: the grain's PID ${add.pid} does not name ${to.name} (${to.up!.authority}#${to.up!.nodeId})`, hint)
      if (served.processId !== to.pid) throw new StepError(`${from.name} → ${to.name}: answered by process ${served.processId}, expected ${to.name} (pid ${to.pid})`, hint)
      roundTrips.push({ from: from.name, to: to.name, key: found.key, pid: add.pid, value: add.value, answeredByPid: served.processId, threadId: served.threadId, ms: add.ms })
      out(`  ${from.name} → ${to.name}: ask ${KIND}/${found.key} add(1) → ${JSON.stringify(add.value)} in ${add.ms} ms`)
      out(`      responding PID ${add.pid}  (process ${served.processId} = ${to.name}, worker thread ${served.threadId})`)
    }
    step('cross-node round trips')
    progress.done(`${roundTrips.length} cross-node round trips succeeded`)
    for (const n of nodes) if (n.up?.httpUrl) out(`metrics: ${n.name} ${n.up.httpUrl}/metrics  (readiness ${n.up.httpUrl}/readyz, dashboard ${n.up.httpUrl}/dashboard)`)
  } catch (e) {
    failure = e instanceof StepError ? e : new StepError(reasonOf(e), 'run `npm install` first; the node logs in the run directory say more (they are kept after a failure)')
    if (interrupted !== undefined) failure = new StepError(`interrupted by ${interrupted}`, 'run it again')
    progress.fail(`quickstart failed: ${failure.message.split('\n')[0]}`)
  }

  progress.start(`stopping ${nodes.length} node processes`)
  await (stopping ?? stopAll())
  const stillRunning = nodes.filter((n) => n.exit === undefined)
  step('stop node processes')
  progress.done(`stopped ${nodes.length} node processes`)
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)

  const ok = failure === undefined && stillRunning.length === 0
  const logs = nodes.map((n) => logPath(n.index))
  const removed: string[] = []
  if (ok && !o.keep) {
    for (const f of logs) rmSync(f, { force: true })
    removed.push(...logs)
  }
  const totalMs = performance.now() - t0
  const runLog = join(dir, 'RUN.md')
  const rlNodes: RunLogNode[] = nodes.map((n) => ({
    name: n.name,
    port: n.port,
    pid: n.pid,
    authority: n.up?.authority,
    nodeId: n.up?.nodeId,
    command: ['GRAINCLUSTER_SECRET=<redacted>', process.execPath, ...execArgv, entry, ...nodeArgs(n.port)].map((a, i) => (i === 0 ? a : shellQuote(a))).join(' '),
    httpUrl: n.up?.httpUrl ?? null,
    logPath: logPath(n.index),
    config: n.up?.config,
    exit: n.exit === undefined ? 'still running' : n.exit.signal !== null ? `killed by ${n.exit.signal}` : `exited with code ${n.exit.code}`,
  }))
  const summary = ok
    ? `${o.nodes}-node cluster formed on ${HOST}; ${roundTrips.length} cross-node ask/reply round trips succeeded (${roundTrips.map((r) => `${r.from} → ${r.to}`).join(', ')}); all node processes stopped`
    : (failure?.message ?? `node processes still running: ${stillRunning.map((n) => n.pid).join(', ')}`)
  writeFileSync(
    runLog,
    renderRunLog({
      runId,
      dir,
      startedAt,
      ok,
      summary,
      hint: failure?.hint,
      command: selfCommand,
      environment: environmentInfo(),
      clusterName,
      seeds,
      nodes: rlNodes,
      members,
      roundTrips,
      steps,
      totalMs,
      keptFiles: [runLog, ...(removed.length > 0 ? [] : logs)],
      removedFiles: removed,
    }),
  )
  progress.stop()
  if (ok) {
    out(`OK: ${summary} in ${(totalMs / 1000).toFixed(1)} s`)
    out(`run log: ${runLog}`)
    return 0
  }
  io.stderr.write(`quickstart failed: ${summary}\nhint: ${failure?.hint ?? 'kill the processes listed above'}\nrun log: ${runLog}\n`)
  return interrupted !== undefined ? 130 : 1
}
