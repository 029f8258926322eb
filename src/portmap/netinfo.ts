// Where the mapping requests go: the default IPv4 gateway (lowest-metric default route in /proc/net/route)
// and this host's primary IPv4 address (the first address of that route's interface, preferring one on
// the gateway's subnet). An interface, so tests and the lab inject their own.

import { readFile } from 'node:fs/promises'
import os from 'node:os'

export interface PrimaryNetwork {
  readonly ifname: string
  readonly address: string
  /** Undefined when there is no default route. */
  readonly gateway: string | undefined
}

export interface NetworkInfo {
  primary(): Promise<PrimaryNetwork | undefined>
}

export interface DefaultRoute {
  readonly ifname: string
  readonly gateway: string
  readonly metric: number
}

// /proc/net/route columns (net/ipv4/fib_trie.c fib_route_seq_show).
const COL_IFACE = 0
const COL_DESTINATION = 1
const COL_GATEWAY = 2
const COL_METRIC = 6
const COL_MASK = 7
const HEX = 16

/** 32-bit little-endian hex as /proc/net/route prints it -> dotted IPv4. */
function hexToIPv4(h: string): string {
  const n = Number.parseInt(h, HEX)
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.')
}

/** The lowest-metric default route in the text of /proc/net/route, if any. */
export function parseProcNetRoute(text: string): DefaultRoute | undefined {
  let best: DefaultRoute | undefined
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length <= COL_MASK) continue
    if (Number.parseInt(f[COL_DESTINATION]!, HEX) !== 0 || Number.parseInt(f[COL_MASK]!, HEX) !== 0) continue
    const route = { ifname: f[COL_IFACE]!, gateway: hexToIPv4(f[COL_GATEWAY]!), metric: Number(f[COL_METRIC]) }
    if (route.gateway === '0.0.0.0') continue
    if (!best || route.metric < best.metric) best = route
  }
  return best
}

function sameSubnet(a: string, b: string, netmask: string): boolean {
  const n = (s: string): number => s.split('.').reduce((acc, x) => ((acc << 8) | Number(x)) >>> 0, 0)
  return (n(a) & n(netmask)) >>> 0 === (n(b) & n(netmask)) >>> 0
}

/** Linux: /proc/net/route plus os.networkInterfaces(), both as seen from this process's network namespace. */
export class LinuxNetworkInfo implements NetworkInfo {
  readonly #routePath: string
  constructor(opts: { routePath?: string } = {}) {
    this.#routePath = opts.routePath ?? '/proc/net/route'
  }
  async primary(): Promise<PrimaryNetwork | undefined> {
    let route: DefaultRoute | undefined
    try {
      route = parseProcNetRoute(await readFile(this.#routePath, 'utf8'))
    } catch {
      route = undefined
    }
    const ifaces = os.networkInterfaces()
    if (route) {
      const v4 = (ifaces[route.ifname] ?? []).filter((a) => a.family === 'IPv4')
      const pick = v4.find((a) => sameSubnet(a.address, route.gateway, a.netmask)) ?? v4[0]
      if (pick) return { ifname: route.ifname, address: pick.address, gateway: route.gateway }
    }
    for (const [ifname, addrs] of Object.entries(ifaces))
      for (const a of addrs ?? [])
        if (a.family === 'IPv4' && !a.internal) return { ifname, address: a.address, gateway: undefined }
    return undefined
  }
}

/** A fixed answer, for tests and for callers that already know the gateway. */
export class StaticNetworkInfo implements NetworkInfo {
  value: PrimaryNetwork | undefined
  constructor(value: PrimaryNetwork | undefined) {
    this.value = value
  }
  async primary(): Promise<PrimaryNetwork | undefined> {
    return this.value
  }
}
