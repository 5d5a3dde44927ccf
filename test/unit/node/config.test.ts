/** resolveConfig: merge order, one-pass validation naming every problem and how to set it, redaction. */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { GrainClusterError } from '../../../src/common/errors.js'
import { type NodeConfig, SAMPLE_GRAIN_PATH, SETTINGS, redactedConfig, resolveConfig, toGrainNodeOptions } from '../../../src/node/config.js'
import { catchErr } from '../../helpers/catch-error.js'

const REQUIRED = { port: '4050', seeds: '127.0.0.1:4050,127.0.0.1:4051', 'cluster-name': 'demo', secret: 'secret-123' }

function writeConfig(body: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'graincluster-config-test-'))
  const file = join(dir, 'graincluster.config.json')
  writeFileSync(file, typeof body === 'string' ? body : JSON.stringify(body))
  return file
}

function issuesOf(e: unknown): string[] {
  expect(GrainClusterError.is(e)).toBe(true)
  return (e as GrainClusterError).details.issues as string[]
}

describe('resolveConfig', () => {
  it('fills defaults around the required settings', () => {
    const c = resolveConfig({ env: {}, flags: REQUIRED })
    expect(c.node).toEqual({ host: '127.0.0.1', port: 4050, partitions: 256, askTimeoutMs: 10_000, metrics: true, grains: [SAMPLE_GRAIN_PATH] })
    expect(c.cluster).toEqual({ name: 'demo', secret: 'secret-123', seeds: ['127.0.0.1:4050', '127.0.0.1:4051'], failureDetector: 'prod' })
    expect(c.http).toEqual({ enabled: true, host: '127.0.0.1', port: 0, bodyLimitBytes: 1_048_576 })
  })

  it('merges defaults < file < env < flags', () => {
    const file = writeConfig({
      node: { port: 1111, partitions: 64, askTimeoutMs: 3_000, workers: 2 },
      cluster: { name: 'from-file', secret: 'file-secret', seeds: ['10.0.0.1:1111'] },
      http: { port: 8080 },
    })
    const env = { GRAINCLUSTER_PORT: '2222', GRAINCLUSTER_PARTITIONS: '128', GRAINCLUSTER_CLUSTER_NAME: 'from-env', GRAINCLUSTER_METRICS: 'off' }
    const c = resolveConfig({ file, env, flags: { port: '3333', 'cluster-name': 'from-flag', http: false } })
    expect(c.node.port).toBe(3333) // flag over env over file
    expect(c.cluster.name).toBe('from-flag')
    expect(c.node.partitions).toBe(128) // env over file
    expect(c.node.metrics).toBe(false) // env over default
    expect(c.node.askTimeoutMs).toBe(3_000) // file over default
    expect(c.node.workers).toBe(2)
    expect(c.cluster.secret).toBe('file-secret')
    expect(c.http).toMatchObject({ enabled: false, port: 8080, host: '127.0.0.1' })
  })

  it('finds the file through --config or GRAINCLUSTER_CONFIG, and resolves grain paths against it', () => {
    const file = writeConfig({ node: { port: 1, grains: ['./grains/a.ts', 'some-package'] }, cluster: { name: 'f', secret: 'file-secret', seeds: ['h:1'] } })
    const viaFlag = resolveConfig({ env: {}, flags: { config: file } })
    const viaEnv = resolveConfig({ env: { GRAINCLUSTER_CONFIG: file } })
    expect(viaFlag).toEqual(viaEnv)
    expect(viaFlag.node.grains).toEqual([join(file, '..', 'grains', 'a.ts'), 'some-package'])
    const fromFlag = resolveConfig({ env: {}, flags: { ...REQUIRED, grains: './x.ts, ./y.ts' }, cwd: '/srv/app' })
    expect(fromFlag.node.grains).toEqual(['/srv/app/x.ts', '/srv/app/y.ts'])
  })

  it('names every missing required setting with its flag, env var and file key', () => {
    const e = catchErr(() => resolveConfig({ env: {}, flags: {} }))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_MISSING')).toBe(true)
    const issues = issuesOf(e)
    expect((e as GrainClusterError).details.missing).toEqual(['node.port', 'cluster.name', 'cluster.secret', 'cluster.seeds'])
    expect(issues).toEqual([
      'node.port: required; set it with --port, GRAINCLUSTER_PORT or "node.port" in the config file',
      'cluster.name: required; set it with --cluster-name, GRAINCLUSTER_CLUSTER_NAME or "cluster.name" in the config file',
      'cluster.secret: required; set it with --secret, GRAINCLUSTER_SECRET or "cluster.secret" in the config file',
      'cluster.seeds: required; set it with --seeds, GRAINCLUSTER_SEEDS or "cluster.seeds" in the config file',
    ])
    expect((e as GrainClusterError).reason).toContain('missing required setting(s): node.port, cluster.name, cluster.secret, cluster.seeds')
  })

  it('reports missing and invalid settings together, still as ERR_CONFIG_MISSING', () => {
    const e = catchErr(() => resolveConfig({ env: { GRAINCLUSTER_PORT: 'http' }, flags: { 'cluster-name': 'x', secret: 'secret-123' } }))
    expect(GrainClusterError.is(e, 'ERR_CONFIG_MISSING')).toBe(true)
    const issues = issuesOf(e)
    expect(issues).toHaveLength(2)
    expect(issues[0]).toBe('node.port: must be integer (got "http" from GRAINCLUSTER_PORT); set it with --port, GRAINCLUSTER_PORT or "node.port" in the config file')
    expect(issues[1]).toMatch(/^cluster\.seeds: required; set it with --seeds/)
  })

  it('lists every invalid value in one ERR_CONFIG_INVALID, with where it came from', () => {
    const file = writeConfig({ node: { askTimeoutMs: 0, colour: 'blue' }, cluster: { failureDetector: 'fast' }, metrics: { pushUrl: 'ftp://gateway' }, tracing: {} })
    const e = catchErr(() =>
      resolveConfig({
        file,
        env: { GRAINCLUSTER_SEEDS: 'a:1, b , c:99999', GRAINCLUSTER_HTTP_BODY_LIMIT_BYTES: '-5' },
        flags: { port: '70000', 'cluster-name': 'bad name', secret: 'short', workers: '8', partitions: '4', 'advertised-authority': 'nohost' },
      }),
    )
    expect(GrainClusterError.is(e, 'ERR_CONFIG_INVALID')).toBe(true)
    const text = issuesOf(e).join('\n')
    expect(text).toContain(`tracing: unknown section in ${file}`)
    expect(text).toContain(`metrics.pushUrl: must be an http:// or https:// URL (got <redacted> from ${file})`)
    expect(text).toContain('node.colour: unknown setting (known in "node": node.host, node.port')
    expect(text).toContain('node.port: must be <= 65535 (got 70000 from --port)')
    expect(text).toContain(`node.askTimeoutMs: must be >= 1 (got 0 from ${file})`)
    expect(text).toContain('node.advertisedAuthority: must be host:port (got "nohost" from --advertised-authority)')
    expect(text).toContain('cluster.name: must use only letters, digits, . _ - (got "bad name" from --cluster-name)')
    expect(text).toContain('cluster.secret: must NOT have fewer than 8 characters (got <redacted> from --secret)')
    expect(text).toContain('cluster.seeds[1]: must be host:port (got "b" from GRAINCLUSTER_SEEDS)')
    expect(text).toContain('cluster.seeds[2]: port must be in [1, 65535] (got "c:99999")')
    expect(text).toContain(`cluster.failureDetector: must be one of "test", "prod" (got "fast" from ${file})`)
    expect(text).toContain('http.bodyLimitBytes: must be >= 1 (got -5 from GRAINCLUSTER_HTTP_BODY_LIMIT_BYTES)')
    expect(text).toContain('node.partitions: must be >= node.workers (4 < 8)')
    expect(text).not.toContain('short') // a secret is never echoed
    for (const line of issuesOf(e).filter((l) => !/unknown (setting|section)/.test(l))) expect(line).toMatch(/set it with --[a-z-]+, GRAINCLUSTER_[A-Z_]+ or "[a-zA-Z.]+" in the config file$/)
  })

  it('refuses an unreadable or non-JSON file, naming it', () => {
    const missing = catchErr(() => resolveConfig({ env: {}, flags: { ...REQUIRED, config: '/nonexistent/graincluster.json' } }))
    expect(GrainClusterError.is(missing, 'ERR_CONFIG_INVALID')).toBe(true)
    expect(issuesOf(missing)[0]).toMatch(/config file \/nonexistent\/graincluster\.json: cannot be read as JSON \(ENOENT\)/)
    const broken = catchErr(() => resolveConfig({ env: {}, flags: REQUIRED, file: writeConfig('{ "node": ') }))
    expect(issuesOf(broken)[0]).toMatch(/cannot be read as JSON/)
    const notObject = catchErr(() => resolveConfig({ env: {}, flags: REQUIRED, file: writeConfig('[1]') }))
    expect(issuesOf(notObject)[0]).toMatch(/must hold a JSON object/)
  })

  it('coerces env and flag strings: booleans, lists, integers', () => {
    const c = resolveConfig({ env: { GRAINCLUSTER_HTTP: 'no', GRAINCLUSTER_WORKERS: '3' }, flags: { ...REQUIRED, seeds: ' a:1 ,, b:2 ' } })
    expect(c.http.enabled).toBe(false)
    expect(c.node.workers).toBe(3)
    expect(c.cluster.seeds).toEqual(['a:1', 'b:2'])
    const bad = catchErr(() => resolveConfig({ env: { GRAINCLUSTER_METRICS: 'maybe' }, flags: REQUIRED }))
    expect(issuesOf(bad)).toEqual(['node.metrics: must be boolean (got "maybe" from GRAINCLUSTER_METRICS); set it with --metrics, GRAINCLUSTER_METRICS or "node.metrics" in the config file'])
  })

  it('returns a deeply frozen config', () => {
    const c = resolveConfig({ env: {}, flags: REQUIRED })
    expect(Object.isFrozen(c) && Object.isFrozen(c.node) && Object.isFrozen(c.cluster.seeds)).toBe(true)
    expect(() => {
      ;(c.node as { port: number }).port = 1
    }).toThrow(TypeError)
  })

  it('redacts the secret and the HTTP token, and nothing else', () => {
    const c = resolveConfig({ env: { GRAINCLUSTER_HTTP_TOKEN: 'tok-abc' }, flags: REQUIRED })
    const r = redactedConfig(c)
    expect(r.cluster.secret).toBe('<redacted>')
    expect(r.http.token).toBe('<redacted>')
    expect(JSON.stringify(r)).not.toMatch(/secret-123|tok-abc/)
    expect({ ...r, cluster: { ...r.cluster, secret: c.cluster.secret }, http: { ...r.http, token: c.http.token } }).toEqual(c)
    expect(c.cluster.secret).toBe('secret-123') // the original is untouched
    const noToken = redactedConfig(resolveConfig({ env: {}, flags: REQUIRED }))
    expect('token' in noToken.http).toBe(false)
  })

  it('maps to GrainNode.start options', () => {
    const c: NodeConfig = resolveConfig({ env: {}, flags: { ...REQUIRED, host: '0.0.0.0', 'advertised-authority': 'node1:4050', 'failure-detector': 'test', workers: '2' } })
    expect(toGrainNodeOptions(c)).toEqual({
      grains: [SAMPLE_GRAIN_PATH],
      workers: 2,
      partitions: 256,
      askTimeoutMs: 10_000,
      metrics: { processMetrics: false, workerStatsIntervalMs: 1_000 },
      cluster: { clusterName: 'demo', secret: 'secret-123', seeds: ['127.0.0.1:4050', '127.0.0.1:4051'], host: '0.0.0.0', port: 4050, advertisedAuthority: 'node1:4050', failureDetector: { profile: 'test' } },
      pubsub: { topics: {} },
    })
  })

  it('maps the pubsub section: start-up topics from the file, env or flag (JSON), checked by the schema', () => {
    const file = writeConfig({ pubsub: { topics: { orders: { delivery: 'at-most-once' }, 'audit.log': { partitionPolicy: 'drop', redelivery: { retries: 2 } } } } })
    expect(toGrainNodeOptions(resolveConfig({ file, env: {}, flags: REQUIRED })).pubsub).toEqual({ topics: { orders: { delivery: 'at-most-once' }, 'audit.log': { partitionPolicy: 'drop', redelivery: { retries: 2 } } } })
    expect(resolveConfig({ file, env: { GRAINCLUSTER_PUBSUB_TOPICS: '{"env-topic":{}}' }, flags: REQUIRED }).pubsub.topics).toEqual({ 'env-topic': {} })
    const issues = issuesOf(catchErr(() => resolveConfig({ env: {}, flags: { ...REQUIRED, 'pubsub-topics': '{"t":{"delivery":"exactly-once"},"bad name":{}}' } }))).join('\n')
    expect(issues).toContain('pubsub.topics.t.delivery')
    expect(issues).toContain('--pubsub-topics')
    expect(issues).toMatch(/bad name/)
    expect(issuesOf(catchErr(() => resolveConfig({ env: { GRAINCLUSTER_PUBSUB_TOPICS: 'orders' }, flags: REQUIRED }))).join()).toContain('pubsub.topics')
  })

  it('maps the metrics section: off, or process metrics, sampling interval and a Pushgateway', () => {
    expect(toGrainNodeOptions(resolveConfig({ env: { GRAINCLUSTER_METRICS: 'off' }, flags: REQUIRED })).metrics).toBe(false)
    const c = resolveConfig({
      env: { GRAINCLUSTER_METRICS_PUSH_URL: 'http://127.0.0.1:9091', GRAINCLUSTER_PROCESS_METRICS: 'yes' },
      flags: { ...REQUIRED, 'worker-stats-interval-ms': '250', 'metrics-push-interval-ms': '5000', 'metrics-push-job': 'shop' },
    })
    expect(toGrainNodeOptions(c).metrics).toEqual({ processMetrics: true, workerStatsIntervalMs: 250, push: { url: 'http://127.0.0.1:9091', intervalMs: 5_000, job: 'shop' } })
    // A push URL may carry credentials: printed configs redact it.
    expect(redactedConfig(c).metrics.pushUrl).toBe('<redacted>')
    expect(issuesOf(catchErr(() => resolveConfig({ env: {}, flags: { ...REQUIRED, 'worker-stats-interval-ms': '5' } }))).join()).toContain('metrics.workerStatsIntervalMs: must be >= 100')
  })

  it('accepts the sample file examples/graincluster.config.json (secret from the environment)', () => {
    const file = fileURLToPath(new URL('../../../examples/graincluster.config.json', import.meta.url))
    const c = resolveConfig({ file, env: { GRAINCLUSTER_SECRET: 'change-me-please' } })
    expect(c.cluster.seeds).toEqual(['127.0.0.1:4050', '127.0.0.1:4051'])
    expect(c.node.grains).toEqual([SAMPLE_GRAIN_PATH])
    expect(c.node.askTimeoutMs).toBe(3_000)
  })

  it('documents every schema key exactly once in SETTINGS, with unique flags and env vars', () => {
    const paths = SETTINGS.map((s) => s.path)
    expect(new Set(paths).size).toBe(paths.length)
    expect(new Set(SETTINGS.map((s) => s.flag)).size).toBe(paths.length)
    expect(new Set(SETTINGS.map((s) => s.env)).size).toBe(paths.length)
    const c = resolveConfig({ env: { GRAINCLUSTER_HTTP_TOKEN: 't', GRAINCLUSTER_WORKERS: '1', GRAINCLUSTER_ADVERTISED_AUTHORITY: 'a:1', GRAINCLUSTER_METRICS_PUSH_URL: 'http://g:9091' }, flags: REQUIRED })
    const keys = Object.entries(c).flatMap(([section, body]) => Object.keys(body).map((k) => `${section}.${k}`))
    expect(keys.sort()).toEqual([...paths].sort())
  })
})
