// dist/native/fanout.node (src/server/native/fanout.cc, built by src/tunnel/native/build.sh on Linux): the notify
// fan-out's native helpers. Each user falls back to node when it is absent; AUTOTUNNEL_FANOUT_NATIVE=0 leaves it
// unused (to compare, and the tests of the fallbacks).

import { createRequire } from 'node:module'

/** out[i] = octets send(2) took for fds[i], or -errno (EBADF for an fd below 0); returns how many took all. */
export type SendAll = (fds: Int32Array, n: number, frame: Uint8Array, out: Int32Array) => number
/** HMAC (OpenSSL digest name) of data[0, end) into out; returns the MAC's length. */
export type Hmac = (digest: string, key: Uint8Array, data: Uint8Array, end: number, out: Uint8Array) => number

export interface FanoutNative {
  readonly sendAll: SendAll
  readonly hmac: Hmac
}

/** The addon, or undefined (not built, not Linux, or turned off). Loaded once. */
export const fanoutNative: FanoutNative | undefined = load()

function load(): FanoutNative | undefined {
  if (process.env.AUTOTUNNEL_FANOUT_NATIVE === '0' || process.platform !== 'linux') return undefined
  try {
    return createRequire(import.meta.url)('../../native/fanout.node') as FanoutNative
  } catch {
    return undefined
  }
}
