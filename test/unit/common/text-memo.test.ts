import { describe, expect, it } from 'vitest'
import { parsePid } from '../../../src/common/pid.js'
import { TextMemo } from '../../../src/common/text-memo.js'

describe('TextMemo', () => {
  it('computes each text once and hands back the same value', () => {
    let calls = 0
    const memo = new TextMemo((t) => {
      calls++
      return { t }
    })
    const a = memo.get('a')
    expect(memo.get('a')).toBe(a)
    expect(memo.get('b')).toEqual({ t: 'b' })
    expect(calls).toBe(2)
  })

  it('stays bounded: full, it starts over, and values stay right', () => {
    let calls = 0
    const memo = new TextMemo((t) => {
      calls++
      return t.length
    }, 3)
    for (const t of ['a', 'bb', 'ccc']) memo.get(t)
    expect(calls).toBe(3)
    expect(memo.get('dddd')).toBe(4) // full: cleared, then kept
    expect(memo.get('a')).toBe(1) // computed again
    expect(calls).toBe(5)
  })

  it('caches nothing when compute throws (a malformed PID fails every time)', () => {
    const memo = new TextMemo(parsePid)
    for (let i = 0; i < 2; i++) expect(() => memo.get('grain://nowhere')).toThrow(expect.objectContaining({ code: 'ERR_PID_INVALID' }))
    const pid = memo.get('grain://127.0.0.1:7000/counter/k')
    expect(memo.get('grain://127.0.0.1:7000/counter/k')).toBe(pid)
  })
})
