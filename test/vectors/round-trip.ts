// Shared by the wire codecs' property tests: what a decoder accepts must survive encode -> decode unchanged, and
// what it refuses it refuses with the codec's own error class (never a TypeError or a RangeError from a read).
import assert from 'node:assert/strict'

// biome-ignore lint/suspicious/noExplicitAny: each pair's encoder takes its own decoder's value type.
export type Codec = readonly [decode: (b: Buffer) => unknown, encode: (v: any) => Buffer]

/** For each codec: decode(b) throws an instance of `wireError`, or decode(encode(decode(b))) equals decode(b). */
export function assertRoundTripOrWireError(
  b: Buffer,
  codecs: readonly Codec[],
  wireError: abstract new (...args: never[]) => Error,
): void {
  for (const [decode, encode] of codecs) {
    let v: unknown
    try {
      v = decode(b)
    } catch (e) {
      assert.ok(e instanceof wireError, String(e))
      continue
    }
    assert.deepEqual(decode(encode(v)), v)
  }
}
