// NAT detection (RFC 7296 2.23: SHA-1(SPIi | SPIr | IP | Port)) and stateless cookies (2.6:
// Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)).

import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { Random } from '../io/random.js'
import { ipToBytes } from './payloads.js'
import type { Endpoint } from './types.js'

const PORT_LEN = 2

export function natDetectionHash(spiI: Buffer, spiR: Buffer, ep: Endpoint): Buffer {
  const port = Buffer.alloc(PORT_LEN)
  port.writeUInt16BE(ep.port, 0)
  return createHash('sha1')
    .update(Buffer.concat([spiI, spiR, ipToBytes(ep.address), port]))
    .digest()
}

const SECRET_LEN = 32
const VERSION_LEN = 4
const COOKIE_HASH_LEN = 16

/** Cookie secrets, rotated by the engine; the previous one stays valid so a cookie in flight still works. */
export class CookieJar {
  #version = 0
  #secret: Buffer
  #previous: Buffer | undefined
  readonly #random: Random

  constructor(random: Random) {
    this.#random = random
    this.#secret = random.bytes(SECRET_LEN)
  }
  rotate(): void {
    this.#previous = this.#secret
    this.#secret = this.#random.bytes(SECRET_LEN)
    this.#version = (this.#version + 1) >>> 0
  }
  #hash(secret: Buffer, ni: Buffer, ip: string, spiI: Buffer): Buffer {
    return createHmac('sha256', secret)
      .update(Buffer.concat([ni, ipToBytes(ip), spiI]))
      .digest()
      .subarray(0, COOKIE_HASH_LEN)
  }
  make(ni: Buffer, ip: string, spiI: Buffer): Buffer {
    const v = Buffer.alloc(VERSION_LEN)
    v.writeUInt32BE(this.#version, 0)
    return Buffer.concat([v, this.#hash(this.#secret, ni, ip, spiI)])
  }
  check(cookie: Buffer, ni: Buffer, ip: string, spiI: Buffer): boolean {
    if (cookie.length !== VERSION_LEN + COOKIE_HASH_LEN) return false
    const v = cookie.readUInt32BE(0)
    const secret = v === this.#version ? this.#secret : v === (this.#version - 1) >>> 0 ? this.#previous : undefined
    if (!secret) return false
    return timingSafeEqual(cookie.subarray(VERSION_LEN), this.#hash(secret, ni, ip, spiI))
  }
}
