// Anti-replay window for ESP: RFC 4303 section 3.4.3 (sliding window) and Appendix A (extended sequence
// numbers: the receiver infers the high 32 bits). The bitmap is a ring of 32-bit blocks as in RFC 6479, so
// advancing the window clears whole blocks instead of shifting bits. One block more than the window keeps
// the oldest block valid while the newest is being filled.
//
// Sequence numbers are JS numbers: exact up to 2^53, which at 10^6 packets per second is 285 years; the
// sender stops at `ESP_SEQ_MAX_ESN` (see esp.ts) long before precision runs out.

const BLOCK_BITS = 32
const BLOCK_MASK = BLOCK_BITS - 1
const TWO_POW_32 = 0x1_0000_0000

/** Number of 32-bit blocks in the ring; the usable window is (blocks - 1) * 32 packets. */
export const REPLAY_DEFAULT_BLOCKS = 64
/** The default window: 2016 packets (RFC 4303 asks for at least 32, the tunnel issue for at least 1024). */
export const REPLAY_DEFAULT_WINDOW = (REPLAY_DEFAULT_BLOCKS - 1) * BLOCK_BITS

export class ReplayWindow {
  /** Packets covered: a sequence number `s` is still checkable while `highest - s < windowSize`. */
  readonly windowSize: number
  /** Sequence numbers at or above this are rejected (the SA must be rekeyed before the sender gets there). */
  readonly limit: number
  readonly #ring: Uint32Array
  readonly #blocks: number
  /** Highest sequence number accepted so far; 0 before the first packet (ESP sequence numbers start at 1). */
  #highest = 0

  constructor(opts: { blocks?: number; limit?: number } = {}) {
    this.#blocks = opts.blocks ?? REPLAY_DEFAULT_BLOCKS
    if (this.#blocks < 2) throw new RangeError('replay window needs at least 2 blocks')
    this.#ring = new Uint32Array(this.#blocks)
    this.windowSize = (this.#blocks - 1) * BLOCK_BITS
    this.limit = opts.limit ?? Number.MAX_SAFE_INTEGER
  }

  get highest(): number {
    return this.#highest
  }

  /** Cheap pre-check before the ICV is verified: false for a duplicate, a too-old or an out-of-range number. */
  check(seq: number): boolean {
    if (seq <= 0 || seq >= this.limit) return false
    if (seq > this.#highest) return true
    if (this.#highest - seq >= this.windowSize) return false
    const block = Math.floor(seq / BLOCK_BITS) % this.#blocks
    return (this.#ring[block]! & (1 << (seq & BLOCK_MASK))) === 0
  }

  /** Marks `seq` as received; call only after the ICV verified. Returns false (and changes nothing) for a replay. */
  accept(seq: number): boolean {
    if (seq <= 0 || seq >= this.limit) return false
    const index = Math.floor(seq / BLOCK_BITS)
    if (seq > this.#highest) {
      const current = Math.floor(this.#highest / BLOCK_BITS)
      let diff = index - current
      if (diff > this.#blocks) diff = this.#blocks
      for (let i = 1; i <= diff; i++) this.#ring[(current + i) % this.#blocks] = 0
      this.#highest = seq
    } else if (this.#highest - seq >= this.windowSize) {
      return false
    }
    const block = index % this.#blocks
    const bit = 1 << (seq & BLOCK_MASK)
    const word = this.#ring[block]!
    if ((word & bit) !== 0) return false
    this.#ring[block] = word | bit
    return true
  }

  /**
   * RFC 4303 Appendix A2.2: the 64-bit sequence number a packet carrying the low 32 bits `seqLo` stands for,
   * given the window. The ICV check then confirms (or refutes) the guess.
   */
  inferEsn(seqLo: number): number {
    const tl = this.#highest % TWO_POW_32
    const th = Math.floor(this.#highest / TWO_POW_32)
    const w = this.windowSize
    if (tl >= w - 1) {
      // Case A: the window lies within one 2^32 subspace.
      return seqLo >= tl - w + 1 ? th * TWO_POW_32 + seqLo : (th + 1) * TWO_POW_32 + seqLo
    }
    // Case B: the window spans two subspaces.
    if (seqLo >= tl - w + 1 + TWO_POW_32) return th === 0 ? seqLo : (th - 1) * TWO_POW_32 + seqLo
    return th * TWO_POW_32 + seqLo
  }
}

/** The obvious version (a set of every accepted number) that tests check ReplayWindow against. */
export class NaiveReplayWindow {
  readonly #seen = new Set<number>()
  #highest = 0
  constructor(
    readonly windowSize: number,
    readonly limit = Number.MAX_SAFE_INTEGER,
  ) {}
  accept(seq: number): boolean {
    if (seq <= 0 || seq >= this.limit) return false
    if (seq <= this.#highest && this.#highest - seq >= this.windowSize) return false
    if (this.#seen.has(seq)) return false
    this.#seen.add(seq)
    if (seq > this.#highest) this.#highest = seq
    return true
  }
}

export const SEQ_SPACE_32 = TWO_POW_32
