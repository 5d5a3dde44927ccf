/**
 * Node configuration: one schema for the config file, `GRAINCLUSTER_*`
 * environment variables and CLI flags. `resolveConfig` merges
 *
 *     DEFAULTS  <  file (JSON)  <  environment  <  flags
 *
 * and validates the result in one pass, so a refused start lists every
 * problem at once, each with the ways to set it. The SETTINGS table below is
 * the single source for flag names, env names, defaults and the README's
 * reference table. This is the only module that reads `process.env`.
 */

import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Static, type TSchema, Type } from '@sinclair/typebox'
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { GrainClusterError } from '../common/errors.js'
import { DEFAULT_PUSH_INTERVAL_MS, DEFAULT_PUSH_JOB, DEFAULT_WORKER_STATS_INTERVAL_MS } from '../observability/metrics-options.js'
import type { GrainNodeOptions } from './grain-node.js'

/** The sample counter grain, loaded when no grain module is configured. */
export const SAMPLE_GRAIN_PATH = fileURLToPath(new URL('../../examples/counter-grain.ts', import.meta.url))

const HOST_PATTERN = '^[A-Za-z0-9._-]+$'
// host:port; the port range is checked after the schema (a pattern cannot).
const AUTHORITY_PATTERN = '^[A-Za-z0-9._-]+:[0-9]{1,5}$'
const Host = Type.String({ minLength: 1, maxLength: 253, pattern: HOST_PATTERN })
const Authority = Type.String({ pattern: AUTHORITY_PATTERN })
const Port = Type.Integer({ minimum: 0, maximum: 65_535 })
const Profile = Type.Unsafe<'test' | 'prod'>({ type: 'string', enum: ['test', 'prod'] })
/** pubsub/topic-registry.ts checkTopicName */
const TOPIC_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'
const Ms = Type.Integer({ minimum: 1, maximum: 86_400_000 })
/** Topic options (pubsub/topic-registry.ts TopicOptions); resolveTopicSettings checks them again when the node creates the topic. */
const TopicOptionsSchema = Type.Object(
  {
    delivery: Type.Optional(Type.Unsafe<'at-least-once' | 'at-most-once'>({ type: 'string', enum: ['at-least-once', 'at-most-once'] })),
    partitionPolicy: Type.Optional(Type.Unsafe<'defer' | 'drop'>({ type: 'string', enum: ['defer', 'drop'] })),
    deferLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    redelivery: Type.Optional(
      Type.Object(
        { timeoutMs: Type.Optional(Ms), attemptTimeoutMs: Type.Optional(Ms), retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })), minDelayMs: Type.Optional(Ms), maxDelayMs: Type.Optional(Ms) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
)

/** JSON Schema (TypeBox) of a resolved node configuration. */
export const NodeConfigSchema = Type.Object(
  {
    node: Type.Object(
      {
        host: Host,
        port: Port,
        advertisedAuthority: Type.Optional(Authority),
        workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
        partitions: Type.Integer({ minimum: 1, maximum: 1 << 20 }),
        askTimeoutMs: Type.Integer({ minimum: 1, maximum: 86_400_000 }),
        metrics: Type.Boolean(),
        grains: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
      },
      { additionalProperties: false },
    ),
    cluster: Type.Object(
      {
        name: Type.String({ minLength: 1, maxLength: 128, pattern: HOST_PATTERN }),
        secret: Type.String({ minLength: 8 }),
        seeds: Type.Array(Authority, { minItems: 1 }),
        failureDetector: Profile,
      },
      { additionalProperties: false },
    ),
    metrics: Type.Object(
      {
        processMetrics: Type.Boolean(),
        workerStatsIntervalMs: Type.Integer({ minimum: 100, maximum: 600_000 }),
        pushUrl: Type.Optional(Type.String({ minLength: 1, pattern: '^https?://' })),
        pushIntervalMs: Type.Integer({ minimum: 100, maximum: 3_600_000 }),
        pushJob: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,128}$' }),
      },
      { additionalProperties: false },
    ),
    pubsub: Type.Object(
      {
        /** Topics this node creates at start (idempotent; give every node the same ones). */
        topics: Type.Record(Type.String(), TopicOptionsSchema, { propertyNames: { pattern: TOPIC_NAME_PATTERN } }),
      },
      { additionalProperties: false },
    ),
    http: Type.Object(
      {
        enabled: Type.Boolean(),
        host: Host,
        port: Port,
        token: Type.Optional(Type.String({ minLength: 1 })),
        bodyLimitBytes: Type.Integer({ minimum: 1, maximum: 1 << 30 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
)

/** A validated, frozen node configuration. */
export type NodeConfig = Readonly<Static<typeof NodeConfigSchema>>

type ValueKind = 'int' | 'string' | 'bool' | 'list' | 'json'

/** One setting: where it lives in the file, its env var, its flag, and its default. */
export interface SettingDoc {
  /** Dotted key in the config file, e.g. `node.port`. */
  readonly path: string
  readonly env: string
  /** Flag without the leading dashes, as `node:util` parseArgs reports it. */
  readonly flag: string
  readonly kind: ValueKind
  /** Default as shown to users; `required` when there is none. */
  readonly defaultText: string
  readonly doc: string
  readonly secret?: boolean
}

/** Every setting, in the order of the reference table. */
export const SETTINGS: readonly SettingDoc[] = Object.freeze([
  { path: 'node.host', env: 'GRAINCLUSTER_HOST', flag: 'host', kind: 'string', defaultText: '127.0.0.1', doc: 'interface the cluster transport binds' },
  { path: 'node.port', env: 'GRAINCLUSTER_PORT', flag: 'port', kind: 'int', defaultText: 'required', doc: 'cluster transport port (0 = any free port; then this node cannot be a seed)' },
  { path: 'node.advertisedAuthority', env: 'GRAINCLUSTER_ADVERTISED_AUTHORITY', flag: 'advertised-authority', kind: 'string', defaultText: 'host:port', doc: 'host:port other nodes dial (behind NAT or in containers)' },
  { path: 'node.workers', env: 'GRAINCLUSTER_WORKERS', flag: 'workers', kind: 'int', defaultText: 'cores − 1, at least 1', doc: 'grain worker threads' },
  { path: 'node.partitions', env: 'GRAINCLUSTER_PARTITIONS', flag: 'partitions', kind: 'int', defaultText: '256', doc: 'key partitions; same on every node' },
  { path: 'node.askTimeoutMs', env: 'GRAINCLUSTER_ASK_TIMEOUT_MS', flag: 'ask-timeout-ms', kind: 'int', defaultText: '10000', doc: 'default ask deadline, ms' },
  { path: 'node.metrics', env: 'GRAINCLUSTER_METRICS', flag: 'metrics', kind: 'bool', defaultText: 'true', doc: 'record Prometheus metrics (`--no-metrics` turns them off)' },
  { path: 'node.grains', env: 'GRAINCLUSTER_GRAINS', flag: 'grains', kind: 'list', defaultText: 'examples/counter-grain.ts', doc: 'grain modules, comma-separated; relative paths resolve against the config file (file) or the working directory' },
  { path: 'cluster.name', env: 'GRAINCLUSTER_CLUSTER_NAME', flag: 'cluster-name', kind: 'string', defaultText: 'required', doc: 'cluster name; nodes of another cluster are refused' },
  { path: 'cluster.secret', env: 'GRAINCLUSTER_SECRET', flag: 'secret', kind: 'string', defaultText: 'required', doc: 'shared handshake secret, at least 8 characters; same on every node; prefer the env var (flags show in `ps`)', secret: true },
  { path: 'cluster.seeds', env: 'GRAINCLUSTER_SEEDS', flag: 'seeds', kind: 'list', defaultText: 'required', doc: 'seed authorities host:port, comma-separated, same list and order on every node' },
  { path: 'cluster.failureDetector', env: 'GRAINCLUSTER_FAILURE_DETECTOR', flag: 'failure-detector', kind: 'string', defaultText: 'prod', doc: 'failure-detector profile: `prod` or `test` (faster, for local clusters)' },
  { path: 'metrics.processMetrics', env: 'GRAINCLUSTER_PROCESS_METRICS', flag: 'process-metrics', kind: 'bool', defaultText: 'false', doc: 'also export Node.js process metrics (CPU, memory, event-loop delay, GC: prom-client defaults, standard names)' },
  { path: 'metrics.workerStatsIntervalMs', env: 'GRAINCLUSTER_WORKER_STATS_INTERVAL_MS', flag: 'worker-stats-interval-ms', kind: 'int', defaultText: '1000', doc: "how often each grain worker reports its grains' calls and waiting calls to the metrics, ms" },
  { path: 'metrics.pushUrl', env: 'GRAINCLUSTER_METRICS_PUSH_URL', flag: 'metrics-push-url', kind: 'string', defaultText: 'none', doc: 'Prometheus Pushgateway to push the metrics to (besides serving /metrics), http(s)://host:port', secret: true },
  { path: 'metrics.pushIntervalMs', env: 'GRAINCLUSTER_METRICS_PUSH_INTERVAL_MS', flag: 'metrics-push-interval-ms', kind: 'int', defaultText: '15000', doc: 'ms between pushes' },
  { path: 'metrics.pushJob', env: 'GRAINCLUSTER_METRICS_PUSH_JOB', flag: 'metrics-push-job', kind: 'string', defaultText: 'graincluster', doc: 'the `job` label of the pushes (`instance` is the node\'s authority)' },
  {
    path: 'pubsub.topics',
    env: 'GRAINCLUSTER_PUBSUB_TOPICS',
    flag: 'pubsub-topics',
    kind: 'json',
    defaultText: '{}',
    doc: 'PubSub topics the node creates at start, `{ "<topic>": { delivery, partitionPolicy, deferLimit, redelivery } }` (JSON in env and flags); give every node the same ones',
  },
  { path: 'http.enabled', env: 'GRAINCLUSTER_HTTP', flag: 'http', kind: 'bool', defaultText: 'true', doc: 'serve the HTTP front (/rpc, /ws, /pubsub, /openapi.json, /metrics, /dashboard, /healthz, /readyz); `--no-http` turns it off' },
  { path: 'http.host', env: 'GRAINCLUSTER_HTTP_HOST', flag: 'http-host', kind: 'string', defaultText: '127.0.0.1', doc: 'interface the HTTP front binds' },
  { path: 'http.port', env: 'GRAINCLUSTER_HTTP_PORT', flag: 'http-port', kind: 'int', defaultText: '0 (any free port)', doc: 'HTTP front port' },
  { path: 'http.token', env: 'GRAINCLUSTER_HTTP_TOKEN', flag: 'http-token', kind: 'string', defaultText: 'none', doc: 'bearer token the HTTP front requires', secret: true },
  { path: 'http.bodyLimitBytes', env: 'GRAINCLUSTER_HTTP_BODY_LIMIT_BYTES', flag: 'http-body-limit-bytes', kind: 'int', defaultText: '1048576 (1 MiB)', doc: 'largest accepted request body' },
] satisfies SettingDoc[])

/** The config file is not a setting of its own, but it has a flag and an env var. */
export const CONFIG_FILE_FLAG = 'config'
export const CONFIG_FILE_ENV = 'GRAINCLUSTER_CONFIG'

/** Defaults below file, env and flags. Settings without one are required. */
export const DEFAULTS = Object.freeze({
  node: { host: '127.0.0.1', partitions: 256, askTimeoutMs: 10_000 /* 10 s */, metrics: true, grains: [SAMPLE_GRAIN_PATH] },
  cluster: { failureDetector: 'prod' },
  metrics: { processMetrics: false, workerStatsIntervalMs: DEFAULT_WORKER_STATS_INTERVAL_MS, pushIntervalMs: DEFAULT_PUSH_INTERVAL_MS, pushJob: DEFAULT_PUSH_JOB },
  pubsub: { topics: {} },
  http: { enabled: true, host: '127.0.0.1', port: 0, bodyLimitBytes: 1_048_576 /* 1 MiB */ },
})

const REDACTED = '<redacted>'

export interface ResolveConfigInput {
  /** Config file (JSON); default: the `config` flag, then GRAINCLUSTER_CONFIG. */
  file?: string
  /** Environment; default process.env. */
  env?: Readonly<Record<string, string | undefined>>
  /** Parsed CLI flags keyed by flag name without dashes (parseArgs `values`). */
  flags?: Readonly<Record<string, string | boolean | undefined>>
  /** Base for relative paths from env and flags; default process.cwd(). */
  cwd?: string
}

type Source = 'default' | { file: string } | { env: string } | { flag: string }
type Tree = Record<string, Record<string, unknown>>

function howToSet(path: string): string {
  const s = SETTINGS.find((x) => x.path === path)
  if (s === undefined) return `set "${path}" in the config file`
  return `set it with --${s.flag}, ${s.env} or "${s.path}" in the config file`
}

function describeSource(src: Source | undefined): string {
  if (src === undefined || src === 'default') return 'the default'
  if ('file' in src) return src.file
  if ('env' in src) return src.env
  return `--${src.flag}`
}

function coerce(kind: ValueKind, raw: string | boolean): unknown {
  if (typeof raw === 'boolean') return raw
  const v = raw.trim()
  switch (kind) {
    case 'int':
      // A value that is not an integer stays a string so the schema reports it with what was given.
      return /^-?\d+$/.test(v) ? Number(v) : raw
    case 'bool': {
      const b = { true: true, false: false, '1': true, '0': false, yes: true, no: false, on: true, off: false }[v.toLowerCase()]
      return b ?? raw
    }
    case 'list':
      return v.split(',').map((x) => x.trim()).filter((x) => x !== '')
    case 'string':
      return v
    case 'json':
      // Text that is not JSON stays a string so the schema reports it with what was given.
      try {
        return JSON.parse(v) as unknown
      } catch {
        return raw
      }
  }
}

function isPlainObject(u: unknown): u is Record<string, unknown> {
  return typeof u === 'object' && u !== null && !Array.isArray(u)
}

// Compiled on first use: grain modules import the package index in every worker, which must not pay for it.
let validator: ValidateFunction | undefined
function validate(tree: Tree): ErrorObject[] {
  validator ??= new Ajv({ allErrors: true, strict: true }).compile(NodeConfigSchema as TSchema)
  return validator(tree) ? [] : [...(validator.errors ?? [])]
}

function valueAt(tree: Tree, instancePath: string): unknown {
  let cur: unknown = tree
  for (const part of instancePath.split('/').slice(1)) cur = isPlainObject(cur) || Array.isArray(cur) ? (cur as Record<string, unknown>)[part] : undefined
  return cur
}

function toIssue(e: ErrorObject, tree: Tree, sources: Map<string, Source>, missing: string[]): string {
  const parts = e.instancePath.split('/').slice(1)
  if (e.keyword === 'required') {
    const path = [...parts, String(e.params.missingProperty)].join('.')
    missing.push(path)
    return `${path}: required; ${howToSet(path)}`
  }
  if (e.keyword === 'additionalProperties') {
    const path = [...parts, String(e.params.additionalProperty)].join('.')
    const section = parts.join('.')
    const known = SETTINGS.filter((s) => s.path.startsWith(`${section}.`)).map((s) => s.path)
    return `${path}: unknown setting${known.length > 0 ? ` (known in "${section}": ${known.join(', ')})` : ' (sections: node, cluster, metrics, pubsub, http)'}`
  }
  // Array items (seeds[1]) and map entries (pubsub.topics.<name>.…) report under their setting.
  const fullPath = parts.filter((p) => !/^\d+$/.test(p)).join('.')
  const settingPath = SETTINGS.find((s) => fullPath.startsWith(`${s.path}.`))?.path ?? fullPath
  if (e.keyword === 'propertyNames') return `${fullPath}: ${JSON.stringify(e.params.propertyName)} is not a valid name (${TOPIC_NAME_PATTERN}); ${howToSet(settingPath)}`
  if (e.keyword === 'pattern' && e.propertyName !== undefined) return ''
  const shown = parts.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('').replace(/^\./, '')
  let message = e.message ?? 'is invalid'
  if (e.keyword === 'pattern') {
    if (settingPath === 'cluster.seeds' || settingPath === 'node.advertisedAuthority') message = 'must be host:port'
    else if (settingPath === 'cluster.name' || settingPath === 'metrics.pushJob') message = 'must use only letters, digits, . _ -'
    else if (settingPath === 'metrics.pushUrl') message = 'must be an http:// or https:// URL'
    else message = 'must be a host name or IPv4 address (letters, digits, . _ -)'
  }
  if (e.keyword === 'enum') message = `must be one of ${(e.params.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}`
  // Never echo a secret, even a wrong one: error output ends up in logs.
  const got = SETTINGS.find((s) => s.path === settingPath)?.secret === true ? REDACTED : JSON.stringify(valueAt(tree, e.instancePath))
  return `${shown}: ${message} (got ${got} from ${describeSource(sources.get(settingPath))}); ${howToSet(settingPath)}`
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v)
    Object.freeze(o)
  }
  return o
}

/**
 * Merge defaults < file < env < flags and validate in one pass. Throws
 * ERR_CONFIG_MISSING when a required setting is absent, else
 * ERR_CONFIG_INVALID; `details.issues` lists every problem either way, each
 * naming the flag, env var and file key that set it.
 */
export function resolveConfig(input: ResolveConfigInput = {}): NodeConfig {
  const env = input.env ?? process.env
  const flags = input.flags ?? {}
  const cwd = input.cwd ?? process.cwd()
  const issues: string[] = []
  const missing: string[] = []
  const sources = new Map<string, Source>()
  const tree: Tree = { node: { ...DEFAULTS.node, grains: [...DEFAULTS.node.grains] }, cluster: { ...DEFAULTS.cluster }, metrics: { ...DEFAULTS.metrics }, pubsub: { topics: {} }, http: { ...DEFAULTS.http } }
  const set = (path: string, value: unknown, src: Source): void => {
    const [section, key] = path.split('.') as [string, string]
    tree[section] ??= {}
    tree[section][key] = value
    sources.set(path, src)
  }

  const flagFile = flags[CONFIG_FILE_FLAG]
  const file = input.file ?? (typeof flagFile === 'string' ? flagFile : undefined) ?? env[CONFIG_FILE_ENV]
  if (file !== undefined && file !== '') {
    const filePath = resolvePath(cwd, file)
    let parsed: unknown
    try {
      parsed = JSON.parse(readFileSync(filePath, 'utf8'))
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message
      issues.push(`config file ${filePath}: cannot be read as JSON (${why}); fix the file or drop --${CONFIG_FILE_FLAG} / ${CONFIG_FILE_ENV}`)
    }
    if (parsed !== undefined && !isPlainObject(parsed)) issues.push(`config file ${filePath}: must hold a JSON object with sections node, cluster, metrics, pubsub, http`)
    else if (parsed !== undefined) {
      for (const [section, body] of Object.entries(parsed)) {
        if (section === '$schema') continue
        if (!(section in tree)) {
          issues.push(`${section}: unknown section in ${filePath} (sections: node, cluster, metrics, pubsub, http)`)
          continue
        }
        if (!isPlainObject(body)) {
          issues.push(`${section}: must be an object in ${filePath}`)
          continue
        }
        for (const [key, value] of Object.entries(body)) {
          // Grain paths in a file are relative to the file, so a config works from any working directory.
          const v = section === 'node' && key === 'grains' && Array.isArray(value) ? value.map((g) => (typeof g === 'string' ? toModulePath(g, dirname(filePath)) : g)) : value
          set(`${section}.${key}`, v, { file: filePath })
        }
      }
    }
  }

  for (const s of SETTINGS) {
    const raw = env[s.env]
    if (raw === undefined || raw === '') continue
    set(s.path, fixPaths(s, coerce(s.kind, raw), cwd), { env: s.env })
  }
  for (const s of SETTINGS) {
    const raw = flags[s.flag]
    if (raw === undefined) continue
    set(s.path, fixPaths(s, coerce(s.kind, raw), cwd), { flag: s.flag })
  }

  for (const e of validate(tree)) {
    const issue = toIssue(e, tree, sources, missing)
    if (issue !== '') issues.push(issue) // '' = a detail of an error already reported
  }
  // Checks a schema cannot express, in the same pass.
  const authorities: [string, unknown][] = [['node.advertisedAuthority', tree.node?.advertisedAuthority]]
  const seeds = tree.cluster?.seeds
  if (Array.isArray(seeds)) seeds.forEach((s, i) => authorities.push([`cluster.seeds[${i}]`, s]))
  for (const [path, a] of authorities) {
    if (typeof a !== 'string' || !new RegExp(AUTHORITY_PATTERN).test(a)) continue
    const port = Number(a.slice(a.lastIndexOf(':') + 1))
    if (port < 1 || port > 65_535) issues.push(`${path}: port must be in [1, 65535] (got ${JSON.stringify(a)}); ${howToSet(path.replace(/\[\d+\]$/, ''))}`)
  }
  const { workers, partitions } = tree.node ?? {}
  if (typeof workers === 'number' && typeof partitions === 'number' && partitions < workers) {
    issues.push(`node.partitions: must be >= node.workers (${partitions} < ${workers}) or some workers own nothing; ${howToSet('node.partitions')}`)
  }

  if (issues.length > 0) {
    const code = missing.length > 0 ? 'ERR_CONFIG_MISSING' : 'ERR_CONFIG_INVALID'
    const head = missing.length > 0 ? `missing required setting(s): ${missing.join(', ')}` : 'invalid configuration'
    throw new GrainClusterError(code, `${head}\n  - ${issues.join('\n  - ')}`, { issues, missing })
  }
  // Snapshot keys in reference-table order, however the sources were merged.
  const ordered: Tree = { node: {}, cluster: {}, metrics: {}, pubsub: {}, http: {} }
  for (const s of SETTINGS) {
    const [section, key] = s.path.split('.') as [string, string]
    if (tree[section]![key] !== undefined) ordered[section]![key] = tree[section]![key]
  }
  return deepFreeze(ordered as unknown as NodeConfig)
}

function toModulePath(g: string, base: string): string {
  if (/^(file|data):/.test(g) || isAbsolute(g)) return g
  // Bare specifiers (a package name) stay as they are; ./ and ../ are paths.
  return g.startsWith('.') ? resolvePath(base, g) : g
}

function fixPaths(s: SettingDoc, v: unknown, cwd: string): unknown {
  return s.path === 'node.grains' && Array.isArray(v) ? v.map((g) => toModulePath(String(g), cwd)) : v
}

/** A copy of `config` that is safe to log: secrets replaced. */
export function redactedConfig(config: NodeConfig): NodeConfig {
  const copy = structuredClone(config) as unknown as Tree
  for (const s of SETTINGS) {
    if (s.secret !== true) continue
    const [section, key] = s.path.split('.') as [string, string]
    if (copy[section]?.[key] !== undefined) copy[section][key] = REDACTED
  }
  return deepFreeze(copy as unknown as NodeConfig)
}

/** GrainNode.start options for a resolved config. */
export function toGrainNodeOptions(config: NodeConfig): GrainNodeOptions {
  const n = config.node
  const c = config.cluster
  return {
    grains: [...n.grains],
    ...(n.workers === undefined ? {} : { workers: n.workers }),
    partitions: n.partitions,
    askTimeoutMs: n.askTimeoutMs,
    metrics: n.metrics && {
      processMetrics: config.metrics.processMetrics,
      workerStatsIntervalMs: config.metrics.workerStatsIntervalMs,
      ...(config.metrics.pushUrl === undefined ? {} : { push: { url: config.metrics.pushUrl, intervalMs: config.metrics.pushIntervalMs, job: config.metrics.pushJob } }),
    },
    cluster: {
      clusterName: c.name,
      secret: c.secret,
      seeds: [...c.seeds],
      host: n.host,
      port: n.port,
      ...(n.advertisedAuthority === undefined ? {} : { advertisedAuthority: n.advertisedAuthority }),
      failureDetector: { profile: c.failureDetector },
    },
    pubsub: { topics: structuredClone(config.pubsub.topics) },
  }
}

/** Default worker count shown in logs when none is configured. */
export function defaultWorkers(): number {
  return Math.max(1, availableParallelism() - 1)
}

/** Terminal preferences from the environment (NO_COLOR, CI), read here so nothing else touches process.env. */
export function terminalEnv(env: Readonly<Record<string, string | undefined>> = process.env): { color: boolean; ci: boolean } {
  return { color: env.NO_COLOR === undefined || env.NO_COLOR === '', ci: env.CI !== undefined && env.CI !== '' && env.CI !== 'false' && env.CI !== '0' }
}

/**
 * Environment for a child node process: this one's, minus every
 * GRAINCLUSTER_* variable (a quickstart must not pick up a stray setting
 * from the shell), plus `extra`.
 */
export function childProcessEnv(extra: Readonly<Record<string, string>>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GRAINCLUSTER_')) env[k] = v
  return { ...env, ...extra }
}
