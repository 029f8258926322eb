import type { Random } from './random.js'

/** Deterministic xorshift32 stream: the same seed gives the same bytes. Never for keys outside tests. */
export class FakeRandom implements Random {
  #s: number
  constructor(seed = 0x2545f491) {
    this.#s = seed >>> 0 || 1
  }
  #next(): number {
    let x = this.#s
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    this.#s = x
    return x
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = this.#next() & 0xff
    return b
  }
  int(maxExclusive: number): number {
    return this.#next() % maxExclusive
  }
}
