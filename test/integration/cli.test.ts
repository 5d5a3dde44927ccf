/** The `graincluster` command as a user runs it: a real child process. */
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { freePorts } from '../helpers/free-port.js'
import { waitUntil } from '../helpers/wait-until.js'

const BIN = fileURLToPath(new URL('../../bin/graincluster.mjs', import.meta.url))
const cleanEnv = (): Record<string, string | undefined> => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GRAINCLUSTER_')))

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: cleanEnv() })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('graincluster CLI', () => {
  it('prints help and the version with exit 0', () => {
    const help = run(['--help'])
    expect(help.status).toBe(0)
    expect(help.stdout).toContain('graincluster quickstart [--nodes N] [--keep]')
    expect(help.stdout).toContain('graincluster node [--config file] [flags]')
    const qs = run(['quickstart', '--help'])
    expect(qs.status).toBe(0)
    expect(qs.stdout).toContain('--nodes N')
    const node = run(['node', '--help'])
    expect(node.status).toBe(0)
    for (const s of ['--port <n>', 'GRAINCLUSTER_SEEDS', 'cluster.secret', '--metrics / --no-metrics', 'GRAINCLUSTER_HTTP_TOKEN', '--config <file>']) expect(node.stdout).toContain(s)
    const version = run(['--version'])
    expect(version.status).toBe(0)
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/)
  })

  it('refuses unknown commands, unknown flags and bad values with exit 2', () => {
    const none = run([])
    expect(none.status).toBe(2)
    expect(none.stderr).toContain('a command is required')
    const bad = run(['frobnicate'])
    expect(bad.status).toBe(2)
    expect(bad.stderr).toContain('unknown command "frobnicate"')
    const badNodes = run(['quickstart', '--nodes', '1'])
    expect(badNodes.status).toBe(2)
    expect(badNodes.stderr).toContain('--nodes must be an integer in [2, 16] (got 1)')
    const badFlag = run(['node', '--prot', '4050'])
    expect(badFlag.status).toBe(2)
    expect(badFlag.stderr).toContain("Unknown option '--prot'")
  })

  it('node starts from flags and env, logs environment and redacted config, prints Up and members, leaves on SIGINT', async () => {
    const [port] = await freePorts(1)
    const secret = 'cli-test-secret-42'
    const child = spawn(process.execPath, [BIN, 'node', '--port', String(port), '--seeds', `127.0.0.1:${port}`, '--cluster-name', 'cli-test', '--workers', '1', '--no-http', '--failure-detector', 'test'], {
      env: { ...cleanEnv(), GRAINCLUSTER_SECRET: secret, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    try {
      // The member lines are written after the header, in writes of their own: wait for the last of them.
      await waitUntil(() => stdout.includes('members (1):') && stdout.includes('(this node)\n'), { what: `node up; stderr so far:\n${stderr}`, timeoutMs: 60_000 })
      expect(stdout).toMatch(new RegExp(`^up: 127\\.0\\.0\\.1:${port} \\(node [0-9a-f]+\\) in cluster "cli-test" after \\d+ ms$`, 'm'))
      expect(stdout).toMatch(new RegExp(`^ {2}127\\.0\\.0\\.1:${port} {2}up {6}[0-9a-f]+ {2}\\(this node\\)$`, 'm'))
      expect(stderr).toMatch(new RegExp(`starting: graincluster \\S+, Node ${process.version.replace(/\./g, '\\.')}, \\S+ .*, \\d+ cores`))
      expect(stderr).toContain('"secret":"<redacted>"')
      expect(stderr).toContain('"http":{"enabled":false')
      expect(stderr + stdout).not.toContain(secret)
      child.kill('SIGINT')
      expect(await exited).toBe(0)
      expect(stderr).toContain('stopping (SIGINT): leaving the cluster')
    } finally {
      child.kill('SIGKILL')
    }
  })
})
