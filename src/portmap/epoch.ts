// Detecting a gateway that lost its mappings from its epoch (seconds since start of epoch):
// RFC 6887 8.5, which refines RFC 6886 3.6 (NAT-PMP's "less than 7/8 of the elapsed time" rule).

/** What the client remembers of the previous response: server epoch and client monotonic time. */
export interface EpochSample {
  readonly epochSec: number
  readonly atMs: number
}

/**
 * RFC 6887 8.5: the epoch is invalid (the server lost state) when it went back by more than one second,
 * or when server and client elapsed times disagree by more than 2 s plus 1/16.
 */
export function epochValid(prev: EpochSample | undefined, cur: EpochSample): boolean {
  if (!prev) return true
  if (cur.epochSec < prev.epochSec - 1) return false
  const cDelta = (cur.atMs - prev.atMs) / 1000
  const sDelta = cur.epochSec - prev.epochSec
  if (sDelta + 2 < cDelta - cDelta / 16) return false
  if (cDelta + 2 < sDelta - sDelta / 16) return false
  return true
}

/**
 * The epoch a client has seen from its gateway, fed by every response and by the gateway's unsolicited
 * announcements. A gateway announces only when it lost its state or its external address changed (RFC 6887
 * 14.1.3 ANNOUNCE, RFC 6886 3.2.1), so an announcement after one of our own responses means the next renewal
 * re-made the mapping, even when the epochs cannot show it: a gateway that restarts within a second or two of
 * mapping for us announces an epoch that RFC 6887 8.5's 2-s slack accepts as a gateway that kept running (the
 * lab saw this: its agent then missed that the gateway's connection tracking was gone). Repeats of one
 * announcement (gateways send a burst) count once: an announcement consistent with the previous announcement is
 * a repeat.
 */
export class EpochTracker {
  #last: EpochSample | undefined
  #lastAnnounced = false
  #restartAnnounced = false

  /** A response's epoch: true when the gateway lost its state since the previous sample (or an announcement said so). */
  response(epochSec: number, atMs: number): boolean {
    const cur = { epochSec, atMs }
    const restarted = this.#restartAnnounced || !epochValid(this.#last, cur)
    this.#restartAnnounced = false
    this.#lastAnnounced = false
    this.#last = cur
    return restarted
  }

  /** An announcement's epoch: true when it tells of a new restart (then also reported by the next `response`). */
  announced(epochSec: number, atMs: number): boolean {
    const cur = { epochSec, atMs }
    const repeat = this.#lastAnnounced && epochValid(this.#last, cur)
    const restarted = this.#last !== undefined && !repeat
    if (restarted) this.#restartAnnounced = true
    this.#lastAnnounced = true
    this.#last = cur
    return restarted
  }

  get last(): EpochSample | undefined {
    return this.#last
  }
}
