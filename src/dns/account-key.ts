// Account TSIG keys (RFC 8945 section 6 leaves key distribution open). The service and the agent derive the same
// key from a password, so a user types the password into the agent and never handles key material.
//
// KDF: PBKDF2-HMAC-SHA256 (RFC 8018 section 5.2), 300,000 iterations,
//   salt   = "autotunnel-tsig-key-v1:" + key name (lower case, fully qualified, e.g. "alice.members.example.")
//   output = the TSIG algorithm's hash length (32 bytes for hmac-sha256, 16 for hmac-md5, ...)
// The key name is the user's own domain, USER.ZONE., so the salt differs per user and per provider zone.
import { pbkdf2, pbkdf2Sync, randomBytes } from 'node:crypto'

export const ACCOUNT_KDF = {
  name: 'PBKDF2-HMAC-SHA256',
  digest: 'sha256',
  iterations: 300_000,
  saltPrefix: 'autotunnel-tsig-key-v1:',
} as const

/** TSIG algorithms an account may use, by the short names nsupdate/dig accept, with their HMAC output size. */
export const ACCOUNT_ALGORITHMS = {
  'hmac-md5': 16,
  'hmac-sha1': 20,
  'hmac-sha224': 28,
  'hmac-sha256': 32,
  'hmac-sha384': 48,
  'hmac-sha512': 64,
} as const

export type AccountAlgorithm = keyof typeof ACCOUNT_ALGORITHMS

export function isAccountAlgorithm(s: string): s is AccountAlgorithm {
  return Object.hasOwn(ACCOUNT_ALGORITHMS, s)
}

const USER_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** A user name is one lower-case LDH label (RFC 1123 host label); it becomes USER.ZONE. */
export function isValidUser(user: string): boolean {
  return USER_LABEL.test(user)
}

/** Fully qualified, lower case, with the trailing dot: "members.example." */
export function fqdn(name: string): string {
  const n = name.toLowerCase()
  if (n === '' || n === '.') return '.'
  return n.endsWith('.') ? n : `${n}.`
}

/** The account's TSIG key name, which is also the user's domain: "alice.members.example." */
export function accountKeyName(user: string, zone: string): string {
  const z = fqdn(zone)
  return z === '.' ? `${user.toLowerCase()}.` : `${user.toLowerCase()}.${z}`
}

function kdfParams(user: string, zone: string, algorithm: AccountAlgorithm): { salt: Buffer; len: number } {
  if (!isValidUser(user.toLowerCase())) throw new TypeError(`invalid user name: ${JSON.stringify(user)}`)
  return {
    salt: Buffer.from(ACCOUNT_KDF.saltPrefix + accountKeyName(user, zone), 'utf8'),
    len: ACCOUNT_ALGORITHMS[algorithm],
  }
}

/** The TSIG secret for USER in ZONE derived from a password (synchronous: CLI and agent start-up). */
export function deriveTsigKey(
  user: string,
  zone: string,
  password: string,
  algorithm: AccountAlgorithm = 'hmac-sha256',
): Buffer {
  const { salt, len } = kdfParams(user, zone, algorithm)
  return pbkdf2Sync(password, salt, ACCOUNT_KDF.iterations, len, ACCOUNT_KDF.digest)
}

/** Same as deriveTsigKey without blocking the event loop (about 0.1-0.3 s of CPU). */
export function deriveTsigKeyAsync(
  user: string,
  zone: string,
  password: string,
  algorithm: AccountAlgorithm = 'hmac-sha256',
): Promise<Buffer> {
  const { salt, len } = kdfParams(user, zone, algorithm)
  return new Promise((resolve, reject) =>
    pbkdf2(password, salt, ACCOUNT_KDF.iterations, len, ACCOUNT_KDF.digest, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  )
}

/** A random key of the algorithm's hash length (256 bits for hmac-sha256). */
export function randomTsigKey(algorithm: AccountAlgorithm = 'hmac-sha256'): Buffer {
  return randomBytes(ACCOUNT_ALGORITHMS[algorithm])
}
