// The host identifier (RFC 6281 section 6.3, RFC 4193 section 3.1): an IPv6 ULA made at each start of the agent,
// first octet 0xFD, then 7 random octets, then the EUI-64 of the primary interface; it stays the same while the agent
// runs, whatever the network does, and is never reused after a restart. The autotunnel label (RFC 6281 section 3)
// is "AutoTunnel-" plus the EUI-64 written as eight dashed upper-case hex octets: AutoTunnel-00-22-69-FF-FE-8E-34-2A.
// (The seed's copy of the RFC reads "...-8E-342A": a PDF line break ate the last dash; the EUI-64 has 8 octets.)
//
// The EUI-64 is the IEEE one (a 48-bit MAC with FF-FE inserted, U/L bit untouched), as in the RFC's example, not
// RFC 4291's modified form. An interface without a MAC (loopback, tun, a point-to-point link) gets a random EUI-64
// with the locally-administered bit set, made once per start like the rest of the ULA.
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Clock } from '../io/clock.js'
import type { Random } from '../io/random.js'
import { formatIpv6 as formatIpv6At, IPV6_ADDR_LEN } from '../tunnel/sa-table.js'

export const ULA_FIRST_OCTET = 0xfd
export const ULA_RANDOM_OCTETS = 7
export const EUI64_LEN = 8
export const MAC48_LEN = 6
export const AUTOTUNNEL_LABEL_PREFIX = 'AutoTunnel-'
export const IDENTITY_FILE = 'identity.json'
const LOCALLY_ADMINISTERED = 0x02
const MULTICAST_BIT = 0x01

export interface Identity {
  /** The ULA in RFC 5952 text form, e.g. "fd3c:91a0:17b2:5e44:22:69ff:fe8e:342a". */
  readonly ula: string
  /** EUI-64, dashed upper-case: "00-22-69-FF-FE-8E-34-2A". */
  readonly eui64: string
  /** "AutoTunnel-00-22-69-FF-FE-8E-34-2A": the SRV target label (RFC 6281 section 3). */
  readonly label: string
  /** The interface the EUI-64 came from ('' when it was made up). */
  readonly interface: string
  readonly mac: string
  /** Wall-clock ms when the identity was made. */
  readonly createdAt: number
}

export class IdentityError extends Error {
  override readonly name = 'IdentityError'
}

/** "00:22:69:8e:34:2a" (or dashes) -> 6 octets; undefined when it is not a usable unicast 48-bit MAC. */
export function parseMac(mac: string): Buffer | undefined {
  const parts = mac.trim().split(/[:-]/)
  if (parts.length !== MAC48_LEN && parts.length !== EUI64_LEN) return undefined
  if (!parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) return undefined
  const b = Buffer.from(parts.map((p) => Number.parseInt(p, 16)))
  if (b.every((x) => x === 0) || (b[0]! & MULTICAST_BIT) !== 0) return undefined
  return b
}

/** IEEE EUI-64 from a 48-bit MAC (OUI, FF FE, then the device half); an 8-octet identifier is returned as is. */
export function eui64FromMac(mac: Buffer): Buffer {
  if (mac.length === EUI64_LEN) return Buffer.from(mac)
  if (mac.length !== MAC48_LEN) throw new IdentityError(`MAC must be 6 or 8 octets, got ${mac.length}`)
  return Buffer.concat([mac.subarray(0, 3), Buffer.from([0xff, 0xfe]), mac.subarray(3)])
}

export function formatEui64(eui64: Buffer): string {
  return [...eui64].map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join('-')
}

export function autoTunnelLabel(eui64: Buffer): string {
  return AUTOTUNNEL_LABEL_PREFIX + formatEui64(eui64)
}

/** RFC 5952 text form of a 16-octet IPv6 address (lower case, longest zero run of 2+ groups compressed). */
export function formatIpv6(a: Buffer): string {
  if (a.length !== IPV6_ADDR_LEN)
    throw new IdentityError(`IPv6 address must be ${IPV6_ADDR_LEN} octets, got ${a.length}`)
  return formatIpv6At(a, 0)
}

/** fd + 7 random octets + EUI-64 (RFC 6281 section 6.3). */
export function makeUla(random: Random, eui64: Buffer): Buffer {
  if (eui64.length !== EUI64_LEN) throw new IdentityError('EUI-64 must be 8 octets')
  return Buffer.concat([Buffer.from([ULA_FIRST_OCTET]), random.bytes(ULA_RANDOM_OCTETS), eui64])
}

/** A random EUI-64 for an interface without a MAC: locally administered, unicast. */
export function randomEui64(random: Random): Buffer {
  const b = random.bytes(EUI64_LEN)
  b[0] = (b[0]! | LOCALLY_ADMINISTERED) & ~MULTICAST_BIT
  return b
}

/** Makes this start's identity from the primary interface (name and MAC, either may be missing). */
export function createIdentity(
  deps: { random: Random; clock: Clock },
  primary: { name: string; mac: string } | undefined,
): Identity {
  const mac = primary ? parseMac(primary.mac) : undefined
  const eui = mac ? eui64FromMac(mac) : randomEui64(deps.random)
  return {
    ula: formatIpv6(makeUla(deps.random, eui)),
    eui64: formatEui64(eui),
    label: autoTunnelLabel(eui),
    interface: mac && primary ? primary.name : '',
    mac: mac && primary ? primary.mac.toLowerCase() : '',
    createdAt: deps.clock.now(),
  }
}

/** Writes DIR/identity.json atomically (write then rename), for `status` when the agent is not running. */
export async function saveIdentity(dir: string, id: Identity): Promise<void> {
  const path = join(dir, IDENTITY_FILE)
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, `${JSON.stringify(id, null, 2)}\n`, { mode: 0o644 })
  await rename(tmp, path)
}

export async function loadIdentity(dir: string): Promise<Identity | undefined> {
  try {
    const v = JSON.parse(await readFile(join(dir, IDENTITY_FILE), 'utf8')) as Partial<Identity>
    if (typeof v.ula !== 'string' || typeof v.label !== 'string') return undefined
    return v as Identity
  } catch {
    return undefined
  }
}
