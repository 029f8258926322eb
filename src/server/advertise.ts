// Which address the server gives for its own name (A/AAAA of ns.ZONE, the glue of NS and discovery SRV answers)
// when it listens on a wildcard address without --advertise (issue 13 finding 1). Publishing the listen address
// (0.0.0.0) is impossible and publishing 127.0.0.1 sends every agent elsewhere to itself. Instead each answer
// carries the address the query arrived on: for TCP and TLS the connection's local address; for UDP, where node's
// dgram has no IP_PKTINFO, run.ts binds one socket per local address beside the wildcard one (Linux delivers a
// datagram to the most specific bound socket), so the socket says it. A query that still reaches the wildcard
// socket (an address added after the start) gets the machine's addresses from the start. Loopback addresses go
// only to clients that came over loopback.
import { networkInterfaces } from 'node:os'
import type { PeerInfo } from './transport.js'

export const WILDCARDS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '[::]'])

export function isLoopback(addr: string): boolean {
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr
  return a.startsWith('127.') || a === '::1'
}

/** "ADDR:PORT" or "[V6]:PORT" -> ADDR (a v4-mapped v6 address as the v4 one). */
export function hostOfLocal(local: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(local) ?? /^([^:]+):\d+$/.exec(local)
  const h = m ? m[1]! : local
  return h.startsWith('::ffff:') && h.includes('.') ? h.slice(7) : h
}

/**
 * The machine's addresses a wildcard listener on `wildcard` receives on: IPv4 for 0.0.0.0, IPv6 (without
 * link-local ones, which need a zone) for ::; non-loopback ones first.
 */
export function localAddresses(wildcard: string): string[] {
  const v6 = wildcard.includes(':')
  const out: string[] = []
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) {
      if ((a.family === 'IPv6') !== v6) continue
      if (v6 && a.address.toLowerCase().startsWith('fe80:')) continue
      if (!out.includes(a.address)) out.push(a.address)
    }
  return [...out.filter((a) => !isLoopback(a)), ...out.filter(isLoopback)]
}

/**
 * The addresses to give `peer` for the server's name. `fixed`: --advertise (or non-wildcard listeners) named them.
 * Otherwise the address the query arrived on when it is known, else `all` (the machine's addresses); never a
 * loopback address to a peer that is not on loopback.
 */
export function advertisedFor(
  peer: PeerInfo | undefined,
  cfg: { readonly nsAddrs: readonly string[]; readonly advertiseLocal?: boolean },
): readonly string[] {
  if (!cfg.advertiseLocal || !peer) return cfg.nsAddrs
  const local = hostOfLocal(peer.local)
  const peerLoop = isLoopback(peer.address)
  if (local && !WILDCARDS.has(local) && (peerLoop || !isLoopback(local))) return [local]
  return peerLoop ? cfg.nsAddrs : cfg.nsAddrs.filter((a) => !isLoopback(a))
}
