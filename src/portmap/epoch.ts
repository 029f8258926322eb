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
