// Topology description of a lab run: a core router, hosts directly on the internet, and sites behind gateways.
// The JSON schema is documented in docs/lab.md; `standardTopology()` is the built-in one.
//
// Addressing rules: every "public" address comes from the RFC 5737 documentation ranges (192.0.2.0/24,
// 198.51.100.0/24, 203.0.113.0/24) and sits as a /32 on its uplink; the core routes each /32 (and each public
// site's LAN) on-link. A site's gateway takes the first address of its LAN; its hosts take the 11th onwards.

export type NatKind = 'upnp' | 'eim' | 'symmetric' | 'double' | 'none'

/**
 * miniupnpd switches for a `upnp` site (all default to true). PCP and NAT-PMP share miniupnpd's port 5351.
 * On a `double` site, giving `upnp` runs miniupnpd on the home router behind the carrier NAT: it learns by STUN
 * that the carrier NAT filters, and disables port forwarding (its start takes about 10 s of STUN retries).
 */
export interface UpnpSpec {
  natpmp?: boolean
  pcp?: boolean
  upnp?: boolean
  /** miniupnpd `min_lifetime` (applies to PCP only); default 120. */
  minLifetimeSec?: number
}

export interface HostSpec {
  name: string
  /** Fixed address inside the site's LAN; default: the next free one from the 11th address. */
  address?: string
}

export interface SiteSpec {
  name: string
  nat: NatKind
  /** Public address of the site's uplink (for `double`: the carrier NAT's). */
  wan: string
  /** The site's LAN as a CIDR; public for `none`, private otherwise. */
  lan: string
  hosts: (string | HostSpec)[]
  upnp?: UpnpSpec
  /** `double` only: the carrier-grade NAT's inside network (default 100.64.0.0/24). */
  carrier?: string
}

export interface InternetHostSpec {
  name: string
  address: string
}

export interface Topology {
  core?: { router?: string; stun?: [string, string] }
  internet: InternetHostSpec[]
  sites: SiteSpec[]
}

export interface ResolvedTopology {
  core: { router: string; stun: [string, string] }
  internet: InternetHostSpec[]
  sites: (Omit<SiteSpec, 'hosts'> & {
    hosts: HostSpec[]
    upnp: Required<UpnpSpec>
    carrier: string
    /** Whether the site's (home) router runs miniupnpd. */
    miniupnpd: boolean
  })[]
}

export class TopologyError extends Error {
  override name = 'TopologyError'
}

/** The built-in topology; addresses are part of the contract (docs/lab.md, README). */
export function standardTopology(): Topology {
  return {
    core: { router: '192.0.2.254', stun: ['192.0.2.1', '192.0.2.2'] },
    internet: [{ name: 'server', address: '198.51.100.10' }],
    sites: [
      { name: 'home', nat: 'upnp', wan: '203.0.113.11', lan: '192.168.1.0/24', hosts: ['desktop'] },
      { name: 'cafe', nat: 'upnp', wan: '203.0.113.12', lan: '10.20.0.0/24', hosts: ['laptop'] },
      { name: 'hotel', nat: 'eim', wan: '203.0.113.13', lan: '10.30.0.0/24', hosts: ['hotel-guest'] },
      { name: 'mobile', nat: 'symmetric', wan: '203.0.113.14', lan: '10.40.0.0/24', hosts: ['phone'] },
      {
        name: 'office',
        nat: 'double',
        wan: '203.0.113.15',
        lan: '192.168.5.0/24',
        carrier: '100.64.0.0/24',
        hosts: ['workstation'],
      },
      {
        name: 'public',
        nat: 'none',
        wan: '198.51.100.2',
        lan: '198.51.100.128/25',
        hosts: [{ name: 'vps', address: '198.51.100.130' }],
      },
    ],
  }
}

export function ipToInt(ip: string): number {
  const parts = ip.split('.')
  if (parts.length !== 4) throw new TopologyError(`not an IPv4 address: ${ip}`)
  let n = 0
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new TopologyError(`not an IPv4 address: ${ip}`)
    n = n * 256 + Number(p)
  }
  return n
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

export interface Cidr {
  network: number
  prefixLen: number
  size: number
}

export function parseCidr(cidr: string): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr)
  if (!m) throw new TopologyError(`not a CIDR: ${cidr}`)
  const prefixLen = Number(m[2])
  if (prefixLen < 8 || prefixLen > 28) throw new TopologyError(`prefix length must be 8..28: ${cidr}`)
  const size = 2 ** (32 - prefixLen)
  const network = ipToInt(m[1]!)
  if (network % size !== 0) throw new TopologyError(`host bits set in ${cidr}`)
  return { network, prefixLen, size }
}

export function inCidr(ip: string, c: Cidr): boolean {
  const n = ipToInt(ip)
  return n >= c.network && n < c.network + c.size
}

const DOC_RANGES = ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'].map(parseCidr)

export function isDocumentationAddress(ip: string): boolean {
  return DOC_RANGES.some((r) => inCidr(ip, r))
}

/** The gateway's LAN address: the first address of the LAN. */
export function gatewayAddress(lan: string): string {
  return intToIp(parseCidr(lan).network + 1)
}

/** First address handed to hosts: the 11th of the LAN (so .10 in a /24). */
export const FIRST_HOST_OFFSET = 10

const NAME_RE = /^[a-z][a-z0-9-]{0,15}$/

/** Validates a topology, fills defaults and keeps only `sites` when given. Throws TopologyError. */
export function resolveTopology(t: Topology, sites?: string[]): ResolvedTopology {
  if (!t || !Array.isArray(t.internet) || !Array.isArray(t.sites)) {
    throw new TopologyError('topology needs `internet` and `sites` arrays')
  }
  const router = t.core?.router ?? '192.0.2.254'
  const stun = t.core?.stun ?? ['192.0.2.1', '192.0.2.2']
  const names = new Set<string>(['core'])
  const publics = new Set<string>()
  const claimName = (n: string): void => {
    if (typeof n !== 'string' || !NAME_RE.test(n)) throw new TopologyError(`bad name ${JSON.stringify(n)}`)
    if (names.has(n)) throw new TopologyError(`name used twice (or reserved): ${n}`)
    names.add(n)
  }
  const claimPublic = (ip: string, what: string): void => {
    if (!isDocumentationAddress(ip)) throw new TopologyError(`${what}: ${ip} is not in a documentation range`)
    if (publics.has(ip)) throw new TopologyError(`${what}: ${ip} used twice`)
    publics.add(ip)
  }
  for (const a of [router, ...stun]) claimPublic(a, 'core')
  for (const h of t.internet) {
    claimName(h.name)
    claimPublic(h.address, h.name)
  }
  if (sites) {
    for (const s of sites) {
      if (!t.sites.some((x) => x.name === s)) throw new TopologyError(`no site ${s} in topology`)
    }
  }
  const out: ResolvedTopology['sites'] = []
  for (const s of t.sites) {
    claimName(s.name)
    if (!['upnp', 'eim', 'symmetric', 'double', 'none'].includes(s.nat)) {
      throw new TopologyError(`site ${s.name}: unknown nat ${s.nat}`)
    }
    if (s.nat === 'double') claimName(`${s.name}-cgn`)
    claimPublic(s.wan, s.name)
    const lan = parseCidr(s.lan)
    if (s.nat === 'none') {
      if (!isDocumentationAddress(intToIp(lan.network))) throw new TopologyError(`site ${s.name}: lan must be public`)
    }
    const carrier = s.carrier ?? '100.64.0.0/24'
    parseCidr(carrier)
    const hosts: HostSpec[] = []
    const used = new Set<string>()
    for (const h of s.hosts ?? []) {
      const spec = typeof h === 'string' ? { name: h } : { ...h }
      claimName(spec.name)
      if (spec.address) {
        if (!inCidr(spec.address, lan)) throw new TopologyError(`${spec.name}: ${spec.address} not in ${s.lan}`)
        used.add(spec.address)
      }
      hosts.push(spec)
    }
    let next = lan.network + FIRST_HOST_OFFSET
    for (const h of hosts) {
      if (h.address) continue
      while (used.has(intToIp(next))) next++
      if (next >= lan.network + lan.size - 1) throw new TopologyError(`site ${s.name}: lan too small`)
      h.address = intToIp(next)
      used.add(h.address)
    }
    const upnp = {
      natpmp: s.upnp?.natpmp ?? true,
      pcp: s.upnp?.pcp ?? true,
      upnp: s.upnp?.upnp ?? true,
      minLifetimeSec: s.upnp?.minLifetimeSec ?? 120,
    }
    const anyProto = upnp.natpmp || upnp.pcp || upnp.upnp
    const miniupnpd = anyProto && (s.nat === 'upnp' || (s.nat === 'double' && s.upnp !== undefined))
    if (!sites || sites.includes(s.name)) out.push({ ...s, hosts, upnp, carrier, miniupnpd })
  }
  return { core: { router, stun: [stun[0], stun[1]] }, internet: t.internet.map((h) => ({ ...h })), sites: out }
}
