// A binary min-heap ordered by a numeric key: the earliest deadline first. Shared by the server's lease table
// (lease-table.ts) and the notify service's deadline sweep (deadline-sweep.ts), which both delete lazily: a stale
// entry stays in the heap and is dropped when it surfaces, or when the owner rebuilds the heap from its live entries.

export class MinHeap<T> {
  readonly #key: (x: T) => number
  #h: T[] = []

  constructor(key: (x: T) => number) {
    this.#key = key
  }

  get size(): number {
    return this.#h.length
  }

  /** The entry with the smallest key, left in place. */
  peek(): T | undefined {
    return this.#h[0]
  }

  push(x: T): void {
    const h = this.#h
    const k = this.#key(x)
    let i = h.length
    h.push(x)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (this.#key(h[p]!) <= k) break
      h[i] = h[p]!
      i = p
    }
    h[i] = x
  }

  /** Removes and returns the entry with the smallest key. */
  pop(): T | undefined {
    const h = this.#h
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last !== undefined) {
      h[0] = last
      this.#down(0)
    }
    return top
  }

  /** Replaces the contents with `xs`, in O(n). */
  reset(xs: T[] = []): void {
    this.#h = xs
    for (let i = (xs.length >> 1) - 1; i >= 0; i--) this.#down(i)
  }

  /** Every entry, in heap order (not sorted). */
  entries(): readonly T[] {
    return this.#h
  }

  #down(i: number): void {
    const h = this.#h
    const n = h.length
    const x = h[i]!
    const k = this.#key(x)
    for (;;) {
      let c = 2 * i + 1
      if (c >= n) break
      if (c + 1 < n && this.#key(h[c + 1]!) < this.#key(h[c]!)) c++
      if (this.#key(h[c]!) >= k) break
      h[i] = h[c]!
      i = c
    }
    h[i] = x
  }
}
