/**
 * The dashboard page's arithmetic (src/rpc/routes/dashboard-model.ts, the
 * functions the page itself runs): the Prometheus text parser, counter
 * rates between two scrapes, and histogram quantiles over the interval as
 * PromQL's histogram_quantile(rate(...)) computes them.
 */
import { describe, expect, it } from 'vitest'
import { gauges, parseMetrics, quantiles, rates } from '../../../src/rpc/routes/dashboard-model.js'

const bucketLines = (labels: string, counts: [string, number][]): string => counts.map(([le, n]) => `lat_bucket{${labels},le="${le}"} ${n}`).join('\n')

describe('dashboard model', () => {
  it('parses samples with labels, escapes, +Inf and no labels; skips comments and junk', () => {
    const s = parseMetrics(['# HELP x help', '# TYPE x counter', 'x{a="1",b="q\\"uote"} 3', 'y 4.5', 'z{le="+Inf"} +Inf', 'not a sample line{', ''].join('\n'))
    expect(s).toEqual([
      { name: 'x', labels: { a: '1', b: 'q"uote' }, value: 3 },
      { name: 'y', labels: {}, value: 4.5 },
      { name: 'z', labels: { le: '+Inf' }, value: Number.POSITIVE_INFINITY },
    ])
  })

  it('computes per-second rates grouped by labels; a reset counter and a series new since the last scrape count from zero', () => {
    const prev = parseMetrics('c{kind="a",code="ok"} 10\nc{kind="a",code="E"} 5\nc{kind="b",code="ok"} 100')
    const cur = parseMetrics('c{kind="a",code="ok"} 30\nc{kind="a",code="E"} 9\nc{kind="b",code="ok"} 6\nc{kind="c",code="ok"} 50')
    const byKind = rates(prev, cur, 'c', ['kind'], 2)
    expect(Object.fromEntries(byKind)).toEqual({ a: 12, b: 3, c: 25 })
    expect(Object.fromEntries(rates(prev, cur, 'c', [], 2))).toEqual({ '': 40 })
    expect(Object.fromEntries(rates(prev, cur, 'c', ['kind'], 0))).toEqual({ a: 0, b: 0, c: 0 })
  })

  it('interpolates quantiles inside the bucket over the interval, summing other labels, as histogram_quantile', () => {
    const prev = parseMetrics(
      [
        bucketLines('m="get",outcome="ok"', [['0.001', 100], ['0.01', 100], ['0.1', 100], ['+Inf', 100]]),
        bucketLines('m="get",outcome="error"', [['0.001', 0], ['0.01', 0], ['0.1', 0], ['+Inf', 0]]),
      ].join('\n'),
    )
    // In the interval: 50 ok under 1 ms, 40 ok in (1 ms, 10 ms], 10 errors in (10 ms, 100 ms].
    const cur = parseMetrics(
      [
        bucketLines('m="get",outcome="ok"', [['0.001', 150], ['0.01', 190], ['0.1', 190], ['+Inf', 190]]),
        bucketLines('m="get",outcome="error"', [['0.001', 0], ['0.01', 0], ['0.1', 10], ['+Inf', 10]]),
        bucketLines('m="idle",outcome="ok"', [['0.001', 0], ['0.01', 0], ['0.1', 0], ['+Inf', 0]]),
      ].join('\n'),
    )
    const p50 = quantiles(prev, cur, 'lat', ['m'], 0.5)
    const p90 = quantiles(prev, cur, 'lat', ['m'], 0.9)
    const p99 = quantiles(prev, cur, 'lat', ['m'], 0.99)
    // rank 50 of 100 falls at the top of the first bucket; 90 at the top of the second; 99 at 9/10 of the third.
    expect(p50.get('get')).toBeCloseTo(0.001, 9)
    expect(p90.get('get')).toBeCloseTo(0.01, 9)
    expect(p99.get('get')).toBeCloseTo(0.01 + 0.09 * 0.9, 9)
    // A series with nothing in the interval has no quantile.
    expect(p99.has('idle')).toBe(false)
  })

  it('puts a quantile that lands in +Inf at the highest finite bound, and reads gauges summed by labels', () => {
    const cur = parseMetrics(bucketLines('m="slow"', [['0.5', 1], ['+Inf', 10]]))
    expect(quantiles([], cur, 'lat', ['m'], 0.99).get('slow')).toBe(0.5)
    const g = parseMetrics('g{kind="a",w="1"} 2\ng{kind="a",w="2"} 3\ng{kind="b",w="1"} 7')
    expect(Object.fromEntries(gauges(g, 'g', ['kind']))).toEqual({ a: 5, b: 7 })
  })
})
