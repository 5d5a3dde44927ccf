/** What `fn` throws, or undefined: lets a test assert on the error's code and details. */
export function catchErr(fn: () => unknown): unknown {
  try {
    fn()
  } catch (e) {
    return e
  }
  return undefined
}
