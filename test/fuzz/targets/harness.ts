// What every fuzz target shares: the contract of a decoder on bytes from the network. A decoder either returns
// or throws its documented bad-input error; anything else (TypeError, RangeError from a Buffer read, a stack
// overflow, a failed round trip) is a crash, and the fuzzer or the replay test reports it.
import { isDeepStrictEqual } from 'node:util'

/** A fuzz target: Jazzer.js calls it with each generated input, the replay test with each corpus file. */
export type FuzzTarget = (data: Buffer) => void

type ErrorClass = abstract new (...args: never[]) => Error

/** Runs `decode`; returns its result, or undefined when it threw one of `allowed`. Rethrows anything else. */
export function expectOnly<T>(allowed: readonly ErrorClass[], decode: () => T): T | undefined {
  try {
    return decode()
  } catch (e) {
    if (allowed.some((c) => e instanceof c)) return undefined
    throw e
  }
}

/** Fails when a re-decoded value differs from the first decode (the codec promises a round trip). */
export function assertRoundTrip(what: string, first: unknown, again: unknown): void {
  if (!isDeepStrictEqual(first, again)) throw new Error(`${what}: decode(encode(x)) differs from x`)
}

/** Splits `data` into a selector octet and the rest, for targets that drive several decoders. */
export function selector(data: Buffer): [number, Buffer] {
  return [data[0] ?? 0, data.subarray(1)]
}
