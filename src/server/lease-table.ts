// Update-lease bookkeeping (RFC 9664 section 4): which leased record expires when. A binary min-heap on the expiry
// time with lazy deletion: set() and delete() touch only the map and push at most one heap entry, and stale heap
// entries are skipped when they surface. Checked against a naive scan in lease-table.test.ts.

interface Entry<K> {
  readonly key: K
  readonly atMs: number
}

export class LeaseTable<K> {
  readonly #expiry = new Map<K, number>()
  #heap: Entry<K>[] = []

  get size(): number {
    return this.#expiry.size
  }

  get(key: K): number | undefined {
    return this.#expiry.get(key)
  }

  /** Sets (or moves) the expiry of `key` to `atMs`. */
  set(key: K, atMs: number): void {
    if (this.#expiry.get(key) === atMs) return
    this.#expiry.set(key, atMs)
    this.#push({ key, atMs })
    if (this.#heap.length > 64 && this.#heap.length > 4 * this.#expiry.size) this.#rebuild()
  }

  delete(key: K): boolean {
    return this.#expiry.delete(key)
  }

  /** The earliest live expiry, or undefined when the table is empty. */
  nextExpiryMs(): number | undefined {
    this.#dropStale()
    return this.#heap[0]?.atMs
  }

  /** Removes and returns every key whose expiry is at or before `nowMs`, earliest first. */
  popDue(nowMs: number): K[] {
    const out: K[] = []
    for (;;) {
      this.#dropStale()
      const top = this.#heap[0]
      if (!top || top.atMs > nowMs) return out
      this.#pop()
      this.#expiry.delete(top.key)
      out.push(top.key)
    }
  }

  keys(): IterableIterator<K> {
    return this.#expiry.keys()
  }

  #dropStale(): void {
    for (;;) {
      const top = this.#heap[0]
      if (!top || this.#expiry.get(top.key) === top.atMs) return
      this.#pop()
    }
  }

  #rebuild(): void {
    this.#heap = []
    for (const [key, atMs] of this.#expiry) this.#push({ key, atMs })
  }

  #push(e: Entry<K>): void {
    const h = this.#heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      const parent = h[p]!
      if (parent.atMs <= e.atMs) break
      h[i] = parent
      i = p
    }
    h[i] = e
  }

  #pop(): void {
    const h = this.#heap
    const last = h.pop()
    if (!last || h.length === 0) return
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const r = l + 1
      const c = r < h.length && h[r]!.atMs < h[l]!.atMs ? r : l
      if (h[c]!.atMs >= last.atMs) break
      h[i] = h[c]!
      i = c
    }
    h[i] = last
  }
}
