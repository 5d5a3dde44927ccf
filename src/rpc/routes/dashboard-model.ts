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

/** The identity of a series within its metric: its labels but `drop`, in a fixed order. */
export function seriesKey(labels: Record<string, string>, drop: readonly string[]): string {
  return Object.keys(labels)
    .filter((k) => !drop.includes(k))
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',')
}

/**
 * Per-second increase of metric `name` between two scrapes, summed by
 * `by` (a label name list; [] sums everything). A counter that went down
 * (the process restarted) counts from zero, and so does a series the first
 * scrape did not have.
 */
export function rates(prev: Sample[], cur: Sample[], name: string, by: readonly string[], seconds: number): Map<string, number> {
  const before = new Map<string, number>()
  for (const s of prev) if (s.name === name) before.set(seriesKey(s.labels, []), s.value)
  const out = new Map<string, number>()
  for (const s of cur) {
    if (s.name !== name) continue
    // A series absent before was created since (prom-client makes one at its first increment): all of it is new.
    const was = before.get(seriesKey(s.labels, [])) ?? 0
    const inc = s.value >= was ? s.value - was : s.value
    const k = by.map((l) => s.labels[l] ?? '').join('\u0000')
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
  const bucket = `${name}_bucket`
  const before = new Map<string, number>()
  for (const s of prev) if (s.name === bucket) before.set(seriesKey(s.labels, []), s.value)
  const groups = new Map<string, Map<number, number>>()
  for (const s of cur) {
    if (s.name !== bucket) continue
    const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le)
    const was = before.get(seriesKey(s.labels, [])) ?? 0
    const inc = s.value >= was ? s.value - was : s.value
    const k = by.map((l) => s.labels[l] ?? '').join('\u0000')
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
    const k = by.map((l) => s.labels[l] ?? '').join('\u0000')
    out.set(k, (out.get(k) ?? 0) + s.value)
  }
  return out
}
