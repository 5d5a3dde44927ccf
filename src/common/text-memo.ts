/**
 * `compute(text)` memoised per text, bounded (cleared when full): hot paths
 * see a few texts over and over (the PIDs a sender addresses), and computing
 * the value costs far more than a lookup. A throwing `compute` caches
 * nothing. Values are shared between callers: keep them read-only.
 */
export class TextMemo<V> {
  readonly #byText = new Map<string, V>()

  constructor(
    readonly compute: (text: string) => V,
    readonly maxEntries = 10_000,
  ) {}

  /** Forget every value. */
  clear(): void {
    this.#byText.clear()
  }

  get(text: string): V {
    let v = this.#byText.get(text)
    if (v === undefined) {
      v = this.compute(text)
      if (this.#byText.size >= this.maxEntries) this.#byText.clear()
      this.#byText.set(text, v)
    }
    return v
  }
}
