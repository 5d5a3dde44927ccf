/**
 * `graincluster node`: one node from the resolved configuration. Logs go to
 * stderr (environment and redacted config first); stdout gets the Up line and
 * the member list, or, with `--control`, only the JSON lines of
 * control-protocol.ts. SIGINT/SIGTERM leave the cluster gracefully; a second
 * signal exits at once.
 */

import { createInterface } from 'node:readline'
import { GrainClusterError, toGrainClusterError } from '../common/errors.js'
import { parsePid } from '../common/pid.js'
import { type ControlCommand, type ControlEvent, encodeLine, parseLine } from './control-protocol.js'
import { type NodeConfig, redactedConfig, resolveConfig, toGrainNodeOptions } from './config.js'
import { environmentInfo, formatEnvironment } from './environment.js'
import { GrainNode } from './grain-node.js'

export interface CliIo {
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream & { isTTY?: boolean }
}

const UP_TIMEOUT_MS = 30_000 // 30 s
const LEAVE_TIMEOUT_MS = 5_000 // 5 s
/** Exit anyway this long after shutdown finished, should a handle keep the loop alive. */
const EXIT_BACKSTOP_MS = 3_000

interface RunningFront {
  url: string
  close(): Promise<void>
}

/**
 * HTTP FRONT CALL SITE: the one place `graincluster node` starts the front
 * (/rpc, /ws, /pubsub, /openapi.json, /metrics, /dashboard, /healthz, /readyz). Imported lazily so `--no-http`
 * never loads Fastify.
 */
async function startHttpFront(node: GrainNode, http: NodeConfig['http']): Promise<RunningFront | undefined> {
  if (!http.enabled) return undefined
  const { startFront } = await import('../rpc/build-front.js')
  return startFront(node, { host: http.host, port: http.port, bodyLimitBytes: http.bodyLimitBytes, ...(http.token === undefined ? {} : { token: http.token }) })
}

export function isConfigError(e: unknown): e is GrainClusterError {
  return GrainClusterError.is(e, 'ERR_CONFIG_MISSING') || GrainClusterError.is(e, 'ERR_CONFIG_INVALID')
}

export async function runNodeCommand(flags: Readonly<Record<string, string | boolean | undefined>>, io: CliIo): Promise<number> {
  const control = flags.control === true
  const emit = (e: ControlEvent): void => {
    if (control) io.stdout.write(encodeLine(e))
  }
  const log = (s: string): void => void io.stderr.write(`[graincluster node ${new Date().toISOString()}] ${s}\n`)

  let config: NodeConfig
  try {
    config = resolveConfig({ flags })
  } catch (e) {
    if (!isConfigError(e)) throw e
    io.stderr.write(`graincluster node: ${e.code}: ${e.reason}\nhint: \`graincluster node --help\` lists every setting with its flag, env var and file key; examples/graincluster.config.json is a sample file.\n`)
    emit({ t: 'error', code: e.code, reason: e.reason, issues: (e.details as { issues?: string[] }).issues ?? [] })
    return 2
  }

  const t0 = performance.now()
  log(`starting: ${formatEnvironment(environmentInfo())}, pid ${process.pid}`)
  log(`config: ${JSON.stringify(redactedConfig(config))}`)

  let node: GrainNode
  try {
    node = await GrainNode.start({ ...toGrainNodeOptions(config), audit: log })
  } catch (e) {
    const err = toGrainClusterError(e)
    const inUse = /EADDRINUSE/.test(err.reason)
    log(`failed to start: ${err.code}: ${err.reason}`)
    io.stderr.write(`hint: ${inUse ? `port ${config.node.port} is taken; pick another with --port` : isConfigError(err) ? 'fix the settings named above' : 'run `npm install`; `npm test` checks the runtime on this machine'}\n`)
    emit({ t: 'error', code: err.code, reason: err.reason })
    return isConfigError(err) ? 2 : 1
  }
  const cluster = node.cluster!
  emit({ t: 'listening', authority: cluster.authority, nodeId: cluster.nodeId, pid: process.pid })
  log(`listening on ${cluster.authority} as ${cluster.nodeId}; joining "${config.cluster.name}" via ${config.cluster.seeds.join(', ')}`)

  let front: RunningFront | undefined
  let finish!: (code: number) => void
  const finished = new Promise<number>((resolve) => (finish = resolve))
  let stopping = false
  const shutdown = (how: 'leave' | 'close', code: number, why: string): void => {
    if (stopping) return
    stopping = true
    log(`stopping (${why})${how === 'leave' ? ': leaving the cluster' : ''}`)
    void (async () => {
      await front?.close().catch((e: unknown) => log(`http front close: ${String(e)}`))
      await (how === 'leave' ? node.leave(LEAVE_TIMEOUT_MS) : node.close()).catch((e: unknown) => log(`shutdown: ${toGrainClusterError(e).reason}`))
      log(`stopped after ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      finish(code)
    })()
  }
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) {
      log(`second ${sig}: exiting now`)
      process.exit(1)
    }
    shutdown('leave', 0, sig)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  void cluster.terminated.then(() => shutdown('close', 1, 'this node was removed from the cluster'))
  const offMembers = node.events.subscribe('member.*', (e) => {
    if ('authority' in e) log(`${e.type} ${e.authority}${'nodeId' in e ? ` (${e.nodeId})` : ''}`)
  })

  const rl = control ? createInterface({ input: process.stdin }) : undefined
  if (rl !== undefined) {
    // Started by a parent (quickstart, tests): when it goes away, so do we.
    rl.on('close', () => shutdown('close', 0, 'stdin closed'))
    rl.on('line', (line) => {
      const c = parseLine<ControlCommand>(line)
      if (c !== undefined && typeof c.id === 'number') void handleCommand(node, c, emit, () => shutdown('leave', 0, 'leave command'))
    })
  }

  try {
    await cluster.whenUp(UP_TIMEOUT_MS)
    front = await startHttpFront(node, config.http)
  } catch (e) {
    const err = toGrainClusterError(e)
    if (!stopping) {
      log(`failed: ${err.code}: ${err.reason}`)
      io.stderr.write(`hint: check that the seeds (${config.cluster.seeds.join(', ')}) run with the same cluster name and secret, and that this node can reach them\n`)
      emit({ t: 'error', code: err.code, reason: err.reason })
      shutdown('close', 1, 'start-up failed')
    }
  }
  if (!stopping) {
    const startMs = Math.round(performance.now() - t0)
    if (control) emit({ t: 'up', authority: cluster.authority, nodeId: cluster.nodeId, pid: process.pid, startMs, httpUrl: front?.url ?? null, config: redactedConfig(config) })
    else {
      const members = cluster.members()
      io.stdout.write(`up: ${cluster.authority} (node ${cluster.nodeId}) in cluster "${config.cluster.name}" after ${startMs} ms\n`)
      io.stdout.write(`members (${members.length}):\n`)
      for (const m of members) io.stdout.write(`  ${m.authority}  ${m.status.padEnd(7)} ${m.nodeId}${m.authority === cluster.authority ? '  (this node)' : ''}\n`)
      if (front !== undefined) io.stdout.write(`http: ${front.url}  (POST /rpc/:kind/:key/:method, /ws, /pubsub, /openapi.json, /metrics, /dashboard, /healthz, /readyz)\n`)
    }
    log(`up${front === undefined ? '' : `; http front on ${front.url}`}; Ctrl-C leaves the cluster`)
  }

  const code = await finished
  offMembers()
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
  rl?.close()
  if (control) process.stdin.destroy()
  setTimeout(() => process.exit(code), EXIT_BACKSTOP_MS).unref()
  return code
}

async function handleCommand(node: GrainNode, c: ControlCommand, emit: (e: ControlEvent) => void, leave: () => void): Promise<void> {
  try {
    switch (c.cmd) {
      case 'members':
        emit({ t: 'reply', id: c.id, ok: true, value: node.cluster!.members().map((m) => ({ authority: m.authority, nodeId: m.nodeId, status: m.status })) })
        return
      case 'find-key': {
        for (let i = 0; i < c.limit; i++) {
          const key = `${c.prefix}${i}`
          const pid = node.placementOf(c.kind, key)
          if (parsePid(pid).authority === c.owner) {
            emit({ t: 'reply', id: c.id, ok: true, value: { key, pid } })
            return
          }
        }
        emit({ t: 'reply', id: c.id, ok: false, code: 'ERR_AUTHORITY_UNREACHABLE', reason: `none of ${c.limit} keys ${c.prefix}0… is placed on ${c.owner} in this node's view of the membership` })
        return
      }
      case 'ask': {
        const t = performance.now()
        const value = await node.ask(c.kind, c.key, c.method, c.payload, { timeoutMs: c.timeoutMs })
        emit({ t: 'reply', id: c.id, ok: true, value: { value, pid: node.placementOf(c.kind, c.key), ms: Math.round((performance.now() - t) * 100) / 100 } })
        return
      }
      case 'leave':
        emit({ t: 'reply', id: c.id, ok: true, value: true })
        leave()
        return
    }
  } catch (e) {
    const err = toGrainClusterError(e)
    emit({ t: 'reply', id: c.id, ok: false, code: err.code, reason: err.reason })
  }
}
