/**
 * What the dashboard page computes from two scrapes of /metrics: parsing
 * the Prometheus text format, per-second rates of counters, and quantiles
 * of histograms over the interval between scrapes (as PromQL's
 * histogram_quantile(rate(...)) would). The page runs these very functions:
 * dashboard.ts inlines their source into its script, so each must stay
 * self-contained (no imports, no closures over module state, plain JS once
 * types are stripped). Unit-tested in Node.
 */

/** One sample: metric name (with its _bucket/_sum/_count suffix), labels, value. */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Samples of a Prometheus text exposition (comments and malformed lines skipped). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line)
    if (m === null) continue
    const labels: Record<string, string> = {}
    const body = m[3] ?? ''
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g
    for (let l = re.exec(body); l !== null; l = re.exec(body)) labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\')
    const v = m[4] === '+Inf' ? Number.POSITIVE_INFINITY : m[4] === '-Inf' ? Number.NEGATIVE_INFINITY : Number(m[4])
    if (!Number.isNaN(v)) out.push({ name: m[1]!, labels, value: v })
  }
  return out
}

/** The identity of a series within its metric: all its labels, in a fixed order. */
export function seriesKey(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',')
}

/** The group a series falls in when summed by the labels `by` ([] : one group). */
export function groupOf(labels: Record<string, string>, by: readonly string[]): string {
  return by.map((l) => labels[l] ?? '').join('\u0000')
}

/**
 * How much each series of metric `name` rose between two scrapes. A
 * series absent before was created since (prom-client makes one at its
 * first increment), so all of it is new; one that went down (the process
 * restarted) counts from zero.
 */
export function increases(prev: Sample[], cur: Sample[], name: string): { sample: Sample; inc: number }[] {
  const before = new Map<string, number>()
  for (const s of prev) if (s.name === name) before.set(seriesKey(s.labels), s.value)
  const out: { sample: Sample; inc: number }[] = []
  for (const s of cur) {
    if (s.name !== name) continue
    const was = before.get(seriesKey(s.labels)) ?? 0
    out.push({ sample: s, inc: s.value >= was ? s.value - was : s.value })
  }
  return out
}

/** Per-second increase of counter `name` between two scrapes, summed by `by` (a label name list; [] sums everything). */
export function rates(prev: Sample[], cur: Sample[], name: string, by: readonly string[], seconds: number): Map<string, number> {
  const out = new Map<string, number>()
  for (const { sample, inc } of increases(prev, cur, name)) {
    const k = groupOf(sample.labels, by)
    out.set(k, (out.get(k) ?? 0) + (seconds > 0 ? inc / seconds : 0))
  }
  return out
}

/**
 * The q-quantile (0..1) of histogram `name` over the interval between two
 * scrapes, per group of `by` labels (summed over the others, e.g. outcome):
 * linear interpolation inside the bucket that holds it, as PromQL's
 * histogram_quantile. Groups with no observation in the interval are left
 * out; a quantile in the +Inf bucket is the highest finite bound.
 */
export function quantiles(prev: Sample[], cur: Sample[], name: string, by: readonly string[], q: number): Map<string, number> {
  const groups = new Map<string, Map<number, number>>()
  for (const { sample, inc } of increases(prev, cur, `${name}_bucket`)) {
    const le = sample.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(sample.labels.le)
    const k = groupOf(sample.labels, by)
    let g = groups.get(k)
    if (g === undefined) groups.set(k, (g = new Map()))
    g.set(le, (g.get(le) ?? 0) + inc)
  }
  const out = new Map<string, number>()
  for (const [k, g] of groups) {
    const les = [...g.keys()].sort((a, b) => a - b)
    const total = g.get(Number.POSITIVE_INFINITY) ?? g.get(les[les.length - 1]!) ?? 0
    if (total <= 0) continue
    const rank = q * total
    let lower = 0
    let below = 0
    for (const le of les) {
      const cum = g.get(le)!
      if (cum >= rank) {
        if (le === Number.POSITIVE_INFINITY) out.set(k, lower)
        else out.set(k, cum === below ? le : lower + ((le - lower) * (rank - below)) / (cum - below))
        break
      }
      lower = le
      below = cum
    }
  }
  return out
}

/** Latest value of gauge `name`, summed by `by` labels. */
export function gauges(cur: Sample[], name: string, by: readonly string[]): Map<string, number> {
  const out = new Map<string, number>()
  for (const s of cur) {
    if (s.name !== name) continue
    const k = groupOf(s.labels, by)
    out.set(k, (out.get(k) ?? 0) + s.value)
  }
  return out
}
