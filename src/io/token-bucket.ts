// A token bucket on the caller's monotonic clock: `burst` actions at once, then `ratePerSec` a second. Used to
// ration work that a remote sender can ask for without authenticating (docs/security.md).

export class TokenBucket {
  readonly #burst: number
  readonly #ratePerSec: number
  #tokens: number
  #at: number | undefined

  constructor(burst: number, ratePerSec: number) {
    if (!(burst >= 1) || !(ratePerSec > 0)) throw new RangeError(`TokenBucket: burst ${burst}, rate ${ratePerSec}`)
    this.#burst = burst
    this.#ratePerSec = ratePerSec
    this.#tokens = burst
  }

  /** Takes one token at monotonic time `nowMs`; false (and nothing taken) when none is left. */
  take(nowMs: number): boolean {
    const since = this.#at === undefined ? 0 : Math.max(0, nowMs - this.#at)
    this.#at = nowMs
    this.#tokens = Math.min(this.#burst, this.#tokens + (since * this.#ratePerSec) / 1000)
    if (this.#tokens < 1) return false
    this.#tokens--
    return true
  }
}
