/**
 * Poll `pred` until it returns a truthy value or `timeoutMs` passes. On
 * timeout, throws with the last value seen (or the last error) so a failing
 * test says what state it was stuck in. Never sleep-then-assert: wait for the
 * condition with a generous bound instead.
 */
export async function waitUntil<T>(
  pred: () => T | Promise<T>,
  { timeoutMs = 20_000, intervalMs = 10, what = 'condition' }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  let lastErr: unknown
  for (let i = 0; ; i++) {
    try {
      const v = await pred()
      if (v) return v
      last = v
    } catch (e) {
      lastErr = e
    }
    if (Date.now() > deadline) {
      const seen = lastErr !== undefined ? `last error: ${lastErr instanceof Error ? lastErr.message : JSON.stringify(lastErr)}` : `last value: ${JSON.stringify(last)}`
      throw new Error(`waitUntil(${what}) timed out after ${timeoutMs} ms (${i + 1} polls); ${seen}`)
    }
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/** `p`, or a rejection naming `what` after `ms`. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}
