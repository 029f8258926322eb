// Fixed-size packet slabs (after wireguard-go's pools.go). A slab holds one packet sealed in place:
// ESP header and IV, the MTU-sized payload, padding, trailer and ICV. A slab goes back to the pool only when
// the socket is done with it (STYLE.md section 3): in the socket.send callback, or, with the synchronous UDP GSO
// send (udp-gso.ts), once its datagram is copied into the batch. The pool size bounds the packets in flight.

import { ESP_MAX_OVERHEAD } from './esp.js'

/** Value released slabs are filled with when `poison` is on, so a use after release shows up in tests. */
export const POISON_BYTE = 0xdb

export class SlabPool {
  readonly slabSize: number
  readonly maxSlabs: number
  readonly #free: Buffer[] = []
  readonly #poison: boolean
  #allocated = 0

  constructor(opts: { mtu: number; maxSlabs?: number; poison?: boolean }) {
    // Round up to 64 octets: allocations of equal size reuse the same V8 backing-store class.
    this.slabSize = Math.ceil((opts.mtu + ESP_MAX_OVERHEAD) / 64) * 64
    this.maxSlabs = opts.maxSlabs ?? 1024
    this.#poison = opts.poison ?? false
  }

  /** A free slab, or undefined when all `maxSlabs` are in use (the caller drops and counts). */
  get(): Buffer | undefined {
    const s = this.#free.pop()
    if (s) return s
    if (this.#allocated >= this.maxSlabs) return undefined
    this.#allocated++
    return Buffer.allocUnsafeSlow(this.slabSize)
  }

  put(slab: Buffer): void {
    if (this.#poison) slab.fill(POISON_BYTE)
    this.#free.push(slab)
  }

  /** Slabs handed out and not yet returned. */
  get outstanding(): number {
    return this.#allocated - this.#free.length
  }
  get allocated(): number {
    return this.#allocated
  }
}
