/** What `fn` throws, or undefined: lets a test assert on the error's code and details. */
export function catchErr(fn: () => unknown): unknown {
  try {
    fn()
  } catch (e) {
    return e
  }
  return undefined
}

/** What the promise `fn` returns rejects with, or undefined. */
export async function catchErrAsync(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn()
  } catch (e) {
    return e
  }
  return undefined
}
