/**
 * The quickstart's run log (RUN.md): everything needed to understand and
 * reproduce a run: commands, configuration (redacted), environment, ports,
 * seeds, members, sample PIDs, URLs, timings and clean-up. Pure rendering;
 * quickstart.ts gathers the data and writes the file.
 */

import type { NodeConfig } from './config.js'
import type { EnvironmentInfo } from './environment.js'

export interface RunLogNode {
  name: string
  port: number
  pid: number | undefined
  authority: string | undefined
  nodeId: string | undefined
  command: string
  httpUrl: string | null
  logPath: string
  config: NodeConfig | undefined
  exit: string
}

export interface RoundTrip {
  from: string
  to: string
  key: string
  pid: string
  value: unknown
  answeredByPid: number
  threadId: number
  ms: number
}

export interface RunLogData {
  runId: string
  dir: string
  startedAt: string
  ok: boolean
  /** Success summary or the failure reason. */
  summary: string
  hint: string | undefined
  command: string
  environment: EnvironmentInfo
  clusterName: string
  seeds: readonly string[]
  nodes: readonly RunLogNode[]
  members: readonly { name: string; authority: string; nodeId: string; status: string }[]
  roundTrips: readonly RoundTrip[]
  steps: readonly { name: string; ms: number }[]
  totalMs: number
  keptFiles: readonly string[]
  removedFiles: readonly string[]
}

const fence = (s: string, lang = ''): string => `\`\`\`${lang}\n${s}\n\`\`\``

export function renderRunLog(d: RunLogData): string {
  const out: string[] = []
  out.push(`# graincluster quickstart run ${d.runId}`, '')
  out.push(`- **Result:** ${d.ok ? 'SUCCESS' : 'FAILED'}: ${d.summary}`)
  if (d.hint !== undefined) out.push(`- **Hint:** ${d.hint}`)
  out.push(`- **Started:** ${d.startedAt}`, `- **Total time:** ${(d.totalMs / 1000).toFixed(2)} s`, `- **Run directory:** \`${d.dir}\``, '')

  out.push('## Commands', '', 'From a clone of the repository:', '', fence('npm install\nnpm run quickstart', 'sh'), '')
  out.push('The exact command of this run:', '', fence(d.command, 'sh'), '')
  out.push('It started each node as a child process (the secret is passed in the environment, never on the command line, and is redacted here):', '')
  out.push(fence(d.nodes.map((n) => n.command).join('\n'), 'sh'), '')
  out.push(
    'To start the same cluster by hand, run one node per terminal without `--control` (stdin then plays no part; Ctrl-C leaves the cluster gracefully), with a secret of your own:',
    '',
    fence(d.nodes.map((n) => `GRAINCLUSTER_SECRET=change-me-please node bin/graincluster.mjs node --port ${n.port} --seeds ${d.seeds.join(',')} --cluster-name ${d.clusterName} --failure-detector test`).join('\n'), 'sh'),
    '',
  )

  out.push('## Environment', '', '| item | value |', '| --- | --- |')
  const e = d.environment
  out.push(`| graincluster | ${e.graincluster} |`, `| Node.js | ${e.node} |`, `| OS | ${e.os} |`, `| CPU cores | ${e.cores} |`, `| CPU | ${e.cpu} |`, `| memory | ${e.memoryGiB} GiB |`, '')

  out.push('## Cluster: ports and seeds', '', `- cluster name: \`${d.clusterName}\` (unique per run, so runs never join each other)`, `- secret: fresh random per run (redacted)`, `- seeds: \`${d.seeds.join(',')}\``, '')
  out.push('| node | process id | port | authority | node id | HTTP front | exit |', '| --- | --- | --- | --- | --- | --- | --- |')
  for (const n of d.nodes) out.push(`| ${n.name} | ${n.pid ?? '-'} | ${n.port} | ${n.authority ?? '-'} | ${n.nodeId ?? '-'} | ${n.httpUrl ?? '-'} | ${n.exit} |`)
  out.push('')

  out.push('## Members', '')
  if (d.members.length === 0) out.push('(the cluster did not form)')
  else {
    out.push('| seen by | authority | node id | status |', '| --- | --- | --- | --- |')
    for (const m of d.members) out.push(`| ${m.name} | ${m.authority} | ${m.nodeId} | ${m.status} |`)
  }
  out.push('')

  out.push('## Sample grain PIDs and round trips', '', 'Each caller asks `counter/<key>` for a key that placement puts on the other node (`ask add(1)`, then `ask whereAmI`, which reports the process that served it).', '')
  if (d.roundTrips.length === 0) out.push('(no round trip completed)')
  else {
    out.push('| caller | owner | PID (created on first ask) | reply | answered by process | worker thread | add(1) round trip |', '| --- | --- | --- | --- | --- | --- | --- |')
    for (const r of d.roundTrips) out.push(`| ${r.from} | ${r.to} | \`${r.pid}\` | ${JSON.stringify(r.value)} | ${r.answeredByPid} | ${r.threadId} | ${r.ms} ms |`)
  }
  out.push('')

  out.push('## Dashboard and metrics URLs', '')
  const fronts = d.nodes.filter((n) => n.httpUrl !== null)
  if (fronts.length === 0) out.push('No HTTP front was running (disabled or not available).')
  for (const n of fronts) {
    out.push(`- ${n.name}: metrics ${n.httpUrl}/metrics, readiness ${n.httpUrl}/readyz, health ${n.httpUrl}/healthz, RPC \`POST ${n.httpUrl}/rpc/counter/<key>/add\`, WebSocket ${n.httpUrl!.replace(/^http/, 'ws')}/ws, API description ${n.httpUrl}/openapi.json, dashboard ${n.httpUrl}/dashboard`)
  }
  out.push('', 'These URLs lived only as long as the run; start the nodes by hand (above) to keep them. A Grafana dashboard, where shipped, reads the `/metrics` endpoints.', '')

  out.push('## Configuration snapshot (secrets redacted)', '')
  for (const n of d.nodes) if (n.config !== undefined) out.push(`${n.name}:`, '', fence(JSON.stringify(n.config, null, 2), 'json'), '')

  out.push('## Timings', '', '| step | ms |', '| --- | --- |')
  for (const s of d.steps) out.push(`| ${s.name} | ${Math.round(s.ms)} |`)
  out.push(`| total | ${Math.round(d.totalMs)} |`, '')

  out.push('## Clean-up', '')
  out.push(`- The quickstart stopped its node processes (${d.nodes.map((n) => `${n.name}: pid ${n.pid ?? '-'}, ${n.exit}`).join('; ')}). Check: \`ps -p ${d.nodes.map((n) => n.pid ?? 0).join(',')}\` lists none of them.`)
  if (d.removedFiles.length > 0) out.push(`- Removed: ${d.removedFiles.map((f) => `\`${f}\``).join(', ')} (pass \`--keep\` to keep them).`)
  if (d.keptFiles.length > 0) out.push(`- Kept: ${d.keptFiles.map((f) => `\`${f}\``).join(', ')}.`)
  out.push(`- Remove this log: \`rm -rf ${d.dir}\``, `- Leftover processes after a hard kill of the quickstart: the nodes exit by themselves when the quickstart's pipe to them closes; otherwise \`kill ${d.nodes.map((n) => n.pid ?? 0).join(' ')}\`.`, '')
  return out.join('\n')
}
