/**
 * GET /dashboard — one self-contained HTML page (no external scripts or
 * styles: the node may run with no network) that scrapes this node's
 * /metrics, /readyz and /cluster/members every few seconds and shows the
 * membership, grain RPC (rates, errors, p50/p99 over the last interval,
 * in flight, waiting, alerts), grain-to-grain calls, PubSub topics and delivery health
 * (dead letters, associations, deferred queues, quarantines, worker
 * crashes). It reads only what a Prometheus server would scrape (spec
 * 10.3): the same series drive Grafana for a cluster-wide view. With
 * metrics disabled it shows the node's diagnostic instead. Open like
 * /metrics and the probes (the RPC token guards calls, not numbers).
 */

import type { FastifyInstance } from 'fastify'
import { gauges, groupOf, increases, parseMetrics, quantiles, rates, seriesKey } from './dashboard-model.js'

/** The series the page reads (tests check each one exists on a node). */
export const DASHBOARD_METRICS = {
  calls: 'graincluster_rpc_calls_total',
  callLatency: 'graincluster_rpc_client_duration_seconds',
  inFlight: 'graincluster_rpc_in_flight',
  queued: 'graincluster_rpc_queued_calls',
  alerts: 'graincluster_rpc_alert_active',
  retries: 'graincluster_rpc_retries_total',
  rejections: 'graincluster_rpc_rejections_total',
  grainCalls: 'graincluster_rpc_grain_calls_total',
  grainLatency: 'graincluster_rpc_grain_call_duration_seconds',
  deadLetters: 'graincluster_deadletters_total',
  workerCrashes: 'graincluster_worker_crashes_total',
  malformed: 'graincluster_frames_malformed_total',
  members: 'graincluster_members',
  unreachable: 'graincluster_members_unreachable',
  minority: 'graincluster_minority',
  associations: 'graincluster_associations',
  deferred: 'graincluster_association_deferred_messages',
  quarantines: 'graincluster_association_quarantines_total',
  handoffs: 'graincluster_placement_handoffs_total',
  pubsubPublished: 'graincluster_pubsub_published_total',
  pubsubDeliveries: 'graincluster_pubsub_deliveries_total',
  pubsubRedeliveries: 'graincluster_pubsub_redeliveries_total',
  pubsubLatency: 'graincluster_pubsub_delivery_seconds',
} as const

const SCRAPE_MS = 2_000

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .4em}
#status{color:#555}.bad{color:#b00020;font-weight:600}.ok{color:#1b7a1b}
table{border-collapse:collapse;background:#fff;min-width:40em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}.none{color:#888;font-style:italic}
`

const SCRIPT = `
var __name = function (f) { return f } // in case the bundler that built this node kept function names
${[parseMetrics, seriesKey, groupOf, increases, rates, quantiles, gauges].map((f) => f.toString()).join('\n')}
var M = ${JSON.stringify(DASHBOARD_METRICS)}
var prev = null, prevAt = 0
function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c] }) }
function fmt(n, d) { return n === undefined ? '–' : n.toFixed(d === undefined ? 1 : d) }
function ms(s) { return s === undefined ? '–' : (s * 1000).toFixed(s < 0.01 ? 2 : 1) }
function table(id, head, rows) {
  var el = document.getElementById(id)
  if (rows.length === 0) { el.innerHTML = '<p class="none">nothing yet</p>'; return }
  el.innerHTML = '<table><tr>' + head.map(function (h) { return '<th>' + esc(h) + '</th>' }).join('') + '</tr>' +
    rows.map(function (r) { return '<tr>' + r.map(function (c) { return '<td>' + c + '</td>' }).join('') + '</tr>' }).join('') + '</table>'
}
function split(k) { return k.split('\\u0000') }
function render(cur, secs) {
  var p = prev || cur
  var calls = rates(p, cur, M.calls, ['kind', 'method'], secs)
  var errs = new Map()
  rates(p, cur, M.calls, ['kind', 'method', 'code'], secs).forEach(function (v, k) { var a = split(k); if (a[2] !== 'ok') errs.set(a[0] + '\\u0000' + a[1], (errs.get(a[0] + '\\u0000' + a[1]) || 0) + v) })
  var p50 = quantiles(p, cur, M.callLatency, ['kind', 'method'], 0.5), p99 = quantiles(p, cur, M.callLatency, ['kind', 'method'], 0.99)
  var retries = rates(p, cur, M.retries, ['kind', 'method'], secs)
  var inFlight = gauges(cur, M.inFlight, ['kind']), queued = gauges(cur, M.queued, ['kind'])
  var rows = []
  calls.forEach(function (v, k) {
    var a = split(k)
    rows.push([esc(a[0] + '.' + a[1]), fmt(v), fmt(errs.get(k) || 0), fmt(retries.get(k) || 0), ms(p50.get(k)), ms(p99.get(k)), fmt(inFlight.get(a[0]) || 0, 0), fmt(queued.get(a[0]) || 0, 0)])
  })
  table('rpc', ['kind.method', 'calls/s', 'errors/s', 'retries/s', 'p50 ms', 'p99 ms', 'in flight (kind)', 'waiting (kind)'], rows)
  var alerts = []
  gauges(cur, M.alerts, ['kind', 'signal']).forEach(function (v, k) { if (v > 0) { var a = split(k); alerts.push([esc(a[0]), esc(a[1])]) } })
  table('alerts', ['kind', 'signal raised'], alerts)
  var rej = []
  rates(p, cur, M.rejections, ['kind', 'code'], secs).forEach(function (v, k) { var a = split(k); rej.push([esc(a[0]), esc(a[1]), fmt(v)]) })
  table('rejections', ['kind', 'code', 'per s'], rej)
  var g = rates(p, cur, M.grainCalls, ['kind', 'method'], secs), g99 = quantiles(p, cur, M.grainLatency, ['kind', 'method'], 0.99)
  var grows = []
  g.forEach(function (v, k) { var a = split(k); grows.push([esc(a[0] + '.' + a[1]), fmt(v), ms(g99.get(k))]) })
  table('grain', ['called kind.method', 'calls/s', 'p99 ms'], grows)
  var pub = rates(p, cur, M.pubsubPublished, ['topic'], secs), del = rates(p, cur, M.pubsubDeliveries, ['topic', 'outcome'], secs)
  var red = rates(p, cur, M.pubsubRedeliveries, ['topic'], secs), t99 = quantiles(p, cur, M.pubsubLatency, ['topic'], 0.99)
  var out = function (t, o) { return fmt(del.get(t + '\u0000' + o) || 0) }
  var prows = []
  pub.forEach(function (v, t) { prows.push([esc(t), fmt(v), out(t, 'delivered'), out(t, 'dropped'), out(t, 'failed'), fmt(red.get(t) || 0), ms(t99.get(t))]) })
  table('pubsub', ['topic', 'published/s', 'delivered/s', 'dropped/s', 'failed/s', 'redelivered/s', 'p99 ms (acknowledged)'], prows)
  var dl = []
  rates(p, cur, M.deadLetters, ['code'], secs).forEach(function (v, k) { dl.push([esc(k), fmt(v)]) })
  table('deadletters', ['code', 'per s'], dl)
  var sum = function (name) { var t = 0; gauges(cur, name, []).forEach(function (v) { t += v }); return t }
  var assoc = gauges(cur, M.associations, ['state'])
  var health = [
    ['worker crashes (total)', fmt(sum(M.workerCrashes), 0)],
    ['malformed frames (total)', fmt(sum(M.malformed), 0)],
    ['associations connected / disconnected / quarantined', fmt(assoc.get('connected') || 0, 0) + ' / ' + fmt(assoc.get('disconnected') || 0, 0) + ' / ' + fmt(assoc.get('quarantined') || 0, 0)],
    ['deferred messages', fmt(sum(M.deferred), 0)],
    ['quarantines (total)', fmt(sum(M.quarantines), 0)],
    ['state hand-offs (total)', fmt(sum(M.handoffs), 0)],
    ['members unreachable', fmt(sum(M.unreachable), 0)],
    ['on the minority side', sum(M.minority) > 0 ? '<span class="bad">yes</span>' : 'no'],
  ]
  table('health', ['', ''], health)
}
async function scrape() {
  var status = document.getElementById('status')
  try {
    var ready = await fetch('readyz').then(function (r) { return r.json() })
    var members = await fetch('cluster/members').then(function (r) { return r.ok ? r.json() : null })
    document.getElementById('title').textContent = 'graincluster ' + (members ? members.self : 'node')
    table('members', ['authority', 'node id', 'status', 'reachable'], members ? members.members.map(function (m) {
      return [esc(m.authority) + (m.authority === members.self ? ' (this node)' : ''), esc(m.nodeId), esc(m.status), m.reachable ? '<span class="ok">yes</span>' : '<span class="bad">no</span>']
    }) : [])
    var res = await fetch('metrics')
    if (!res.ok) {
      var body = await res.json().catch(function () { return null })
      status.innerHTML = '<span class="bad">' + esc(body && body.error ? body.error.code + ': ' + body.error.reason : 'GET /metrics: HTTP ' + res.status) + '</span>'
      return
    }
    var cur = parseMetrics(await res.text()), now = Date.now()
    render(cur, prev ? (now - prevAt) / 1000 : 0)
    prev = cur; prevAt = now
    status.innerHTML = (ready.status === 'ready' ? '<span class="ok">ready</span>' : '<span class="bad">not ready: ' + esc(ready.reasons.join('; ')) + '</span>') +
      ' · scraped ' + new Date(now).toLocaleTimeString() + ', rates over the last ${SCRAPE_MS / 1000} s'
  } catch (e) {
    status.innerHTML = '<span class="bad">' + esc('scrape failed: ' + e) + '</span>'
  }
}
scrape()
setInterval(scrape, ${SCRAPE_MS})
`

/** The page, built once. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>graincluster dashboard</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>${STYLE}</style></head>
<body>
<h1 id="title">graincluster</h1><div id="status">loading…</div>
<h2>Members</h2><div id="members"></div>
<h2>Grain RPC (node API, HTTP and WebSocket callers)</h2><div id="rpc"></div>
<h2>Alerts</h2><div id="alerts"></div>
<h2>Refused calls (queue full, dropped, schema mismatch)</h2><div id="rejections"></div>
<h2>Calls grains make (ctx.ask)</h2><div id="grain"></div>
<h2>PubSub (publishes from this node)</h2><div id="pubsub"></div>
<h2>Dead letters</h2><div id="deadletters"></div>
<h2>Node health</h2><div id="health"></div>
<script>${SCRIPT}</script>
</body></html>
`

export function dashboardRoutes(): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    app.get('/dashboard', async (_req, reply) => reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML))
  }
}
