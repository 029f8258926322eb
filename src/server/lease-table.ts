// Update-lease bookkeeping (RFC 9664 section 4): which leased record expires when. A binary min-heap on the expiry
// time with lazy deletion: set() and delete() touch only the map and push at most one heap entry, and stale heap
// entries are skipped when they surface. Checked against a naive scan in lease-table.test.ts.
import { MinHeap } from '../io/min-heap.js'

interface Entry<K> {
  readonly key: K
  readonly atMs: number
}

export class LeaseTable<K> {
  readonly #expiry = new Map<K, number>()
  readonly #heap = new MinHeap<Entry<K>>((e) => e.atMs)

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
    this.#heap.push({ key, atMs })
    if (this.#heap.size > 64 && this.#heap.size > 4 * this.#expiry.size) this.#rebuild()
  }

  delete(key: K): boolean {
    return this.#expiry.delete(key)
  }

  /** The earliest live expiry, or undefined when the table is empty. */
  nextExpiryMs(): number | undefined {
    this.#dropStale()
    return this.#heap.peek()?.atMs
  }

  /** Removes and returns every key whose expiry is at or before `nowMs`, earliest first. */
  popDue(nowMs: number): K[] {
    const out: K[] = []
    for (;;) {
      this.#dropStale()
      const top = this.#heap.peek()
      if (!top || top.atMs > nowMs) return out
      this.#heap.pop()
      this.#expiry.delete(top.key)
      out.push(top.key)
    }
  }

  keys(): IterableIterator<K> {
    return this.#expiry.keys()
  }

  #dropStale(): void {
    for (;;) {
      const top = this.#heap.peek()
      if (!top || this.#expiry.get(top.key) === top.atMs) return
      this.#heap.pop()
    }
  }

  #rebuild(): void {
    this.#heap.reset([...this.#expiry].map(([key, atMs]) => ({ key, atMs })))
  }
}
