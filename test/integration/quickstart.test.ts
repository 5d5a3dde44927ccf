/**
 * `graincluster quickstart` as a user runs it: the real CLI in a child
 * process, which spawns real node processes. Also `graincluster node`
 * refusing to start without its required settings.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const BIN = fileURLToPath(new URL('../../bin/graincluster.mjs', import.meta.url))
const RUN_TIMEOUT_MS = 90_000

interface Run {
  status: number | null
  stdout: string
  stderr: string
}

const cleanEnv = (): Record<string, string | undefined> => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GRAINCLUSTER_') && k !== 'NODE_OPTIONS'))

function runAsync(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`graincluster ${args.join(' ')} did not finish within ${RUN_TIMEOUT_MS} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`))
    }, RUN_TIMEOUT_MS)
    child.on('exit', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

const runDirs: string[] = []
afterAll(() => {
  for (const d of runDirs) rmSync(d, { recursive: true, force: true })
})

function parseRun(r: Run): { runLog: string; nodePids: number[]; clusterName: string } {
  const runLog = /^run log: (.+RUN\.md)$/m.exec(r.stdout)?.[1]
  expect(runLog, r.stdout + r.stderr).toBeDefined()
  runDirs.push(dirname(runLog!))
  const nodePids = [...r.stdout.matchAll(/^ {2}node-\d+ {2}\S+ {2}up {2}node [0-9a-f]+ {2}pid (\d+)/gm)].map((m) => Number(m[1]))
  const clusterName = /^cluster "([^"]+)" is Up/m.exec(r.stdout)?.[1] ?? ''
  return { runLog: runLog!, nodePids, clusterName }
}

describe('graincluster quickstart', () => {
  it('forms a 2-node cluster of real processes, round-trips both ways, logs the run and cleans up', async () => {
    const r = await runAsync(['quickstart', '--keep'])
    expect(r.status, r.stderr).toBe(0)
    const { runLog, nodePids, clusterName } = parseRun(r)
    expect(nodePids).toHaveLength(2)
    expect(nodePids[0]).not.toBe(nodePids[1])

    // Both directions, each answered by the other node's process.
    const trip = (from: number, to: number): RegExpExecArray | null =>
      new RegExp(`node-${from} → node-${to}: ask counter/\\S+ add\\(1\\) → 1 in [\\d.]+ ms\\n\\s+responding PID (grain://127\\.0\\.0\\.1:\\d+/counter/\\S+#[0-9a-f]+)  \\(process (\\d+) = node-${to}`).exec(r.stdout)
    const oneToTwo = trip(1, 2)
    const twoToOne = trip(2, 1)
    expect(oneToTwo, r.stdout).not.toBeNull()
    expect(twoToOne, r.stdout).not.toBeNull()
    expect(Number(oneToTwo![2])).toBe(nodePids[1])
    expect(Number(twoToOne![2])).toBe(nodePids[0])
    expect(r.stdout).toMatch(/^OK: 2-node cluster formed .* in \d+\.\d s$/m)
    // Progress goes to stderr, data to stdout.
    expect(r.stderr).toContain('cluster formed: every node sees 2 members Up')
    expect(r.stdout).not.toContain('…')

    // The run log holds every promised item.
    const log = readFileSync(runLog, 'utf8')
    expect(log).toContain('**Result:** SUCCESS')
    expect(log).toContain('npm run quickstart')
    expect(log).toMatch(/bin\/graincluster\.mjs quickstart --keep/) // the exact command
    expect(log).toMatch(/GRAINCLUSTER_SECRET=<redacted> \S+ .*graincluster\.mjs node --control --host 127\.0\.0\.1 --port \d+ --seeds 127\.0\.0\.1:\d+,127\.0\.0\.1:\d+ --cluster-name quickstart-/)
    expect(log).toContain(`| Node.js | ${process.version} |`)
    expect(log).toMatch(/\| OS \| \S+/)
    expect(log).toMatch(/\| CPU cores \| \d+ \|/)
    expect(log).toContain(`cluster name: \`${clusterName}\``)
    expect(log).toMatch(/seeds: `127\.0\.0\.1:\d+,127\.0\.0\.1:\d+`/)
    for (const pid of nodePids) expect(log).toMatch(new RegExp(`\\| node-\\d \\| ${pid} \\| \\d+ \\| 127\\.0\\.0\\.1:\\d+ \\| [0-9a-f]+ \\| .* \\| exited with code 0 \\|`))
    expect(log).toContain(oneToTwo![1])
    expect(log).toContain(twoToOne![1])
    expect(log).toMatch(/metrics http:\/\/127\.0\.0\.1:\d+\/metrics/)
    expect(log).toMatch(/API description http:\/\/127\.0\.0\.1:\d+\/openapi\.json, dashboard http:\/\/127\.0\.0\.1:\d+\/dashboard/)
    expect(log).toContain('"secret": "<redacted>"')
    expect(log).toMatch(/## Configuration snapshot[\s\S]*"seeds"/)
    expect(log).toContain('## Clean-up')
    expect(log).toContain(`rm -rf ${dirname(runLog)}`)
    expect(log).toMatch(/\| total \| \d+ \|/)
    // --keep kept the node logs.
    expect(existsSync(`${dirname(runLog)}/node-1.log`)).toBe(true)

    for (const pid of nodePids) expect(isAlive(pid), `node process ${pid} still running`).toBe(false)
  })

  it('two quickstarts at once do not collide', async () => {
    const [a, b] = await Promise.all([runAsync(['quickstart']), runAsync(['quickstart'])])
    expect(a.status, a.stderr).toBe(0)
    expect(b.status, b.stderr).toBe(0)
    const ra = parseRun(a)
    const rb = parseRun(b)
    expect(ra.runLog).not.toBe(rb.runLog)
    expect(ra.clusterName).not.toBe(rb.clusterName)
    // Without --keep the node logs are gone and RUN.md stays.
    expect(existsSync(`${dirname(ra.runLog)}/node-1.log`)).toBe(false)
    expect(existsSync(ra.runLog)).toBe(true)
    for (const pid of [...ra.nodePids, ...rb.nodePids]) expect(isAlive(pid), `node process ${pid} still running`).toBe(false)
  })
})

describe('graincluster node refuses to start without its required settings', () => {
  it('names each missing item and how to set it, exit 2', () => {
    const r = spawnSync(process.execPath, [BIN, 'node', '--cluster-name', 'demo'], { encoding: 'utf8', env: cleanEnv(), timeout: 30_000 })
    expect(r.status).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr).toContain('ERR_CONFIG_MISSING')
    expect(r.stderr).toContain('node.port: required; set it with --port, GRAINCLUSTER_PORT or "node.port" in the config file')
    expect(r.stderr).toContain('cluster.seeds: required; set it with --seeds, GRAINCLUSTER_SEEDS or "cluster.seeds" in the config file')
    expect(r.stderr).toContain('cluster.secret: required; set it with --secret, GRAINCLUSTER_SECRET or "cluster.secret" in the config file')
    expect(r.stderr).not.toContain('cluster.name: required')
    expect(r.stderr).toContain('graincluster node --help')
  })

  it('refuses an invalid authority and port, exit 2, before anything starts', () => {
    const r = spawnSync(process.execPath, [BIN, 'node', '--port', '99999', '--host', 'bad host', '--seeds', 'nohostport', '--cluster-name', 'demo'], {
      encoding: 'utf8',
      env: { ...cleanEnv(), GRAINCLUSTER_SECRET: 'secret-123' },
      timeout: 30_000,
    })
    expect(r.status).toBe(2)
    expect(r.stderr).toContain('ERR_CONFIG_INVALID')
    expect(r.stderr).toContain('node.port: must be <= 65535 (got 99999 from --port)')
    expect(r.stderr).toContain('node.host: must be a host name or IPv4 address')
    expect(r.stderr).toContain('cluster.seeds[0]: must be host:port (got "nohostport" from --seeds)')
    expect(r.stderr).not.toContain('starting:') // nothing started
  })
})
