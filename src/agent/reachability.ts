// Where peers should send to (RFC 6281 sections 3, 4.1 and 5.1), decided from the network state and the port
// mapping: the mapped external address and port when a gateway gave one; the host's own address and port when its
// primary IPv4 address is public; and when it is private and no gateway answered ("NAT without mapping"), the
// private address and the local port, marked nat=unmapped in TXT. RFC 6281 section 4.1: a host that finds no
// NAT-PMP or UPnP "would proceed under the assumption that the network is a public network", i.e. BTMM published
// the address it had. That record still lets a peer on the same LAN connect, and the mark tells a peer elsewhere
// that it needs hole punching (later work) rather than a direct send.

import { isRfc1918, type NetState } from './netmon.js'
import type { NatMode } from './records.js'

export interface MappingView {
  readonly protocol: 'pcp' | 'natpmp' | 'upnp'
  readonly external: { readonly address: string; readonly port: number }
}

export interface Reachability {
  readonly endpoint: { readonly address: string; readonly port: number }
  readonly nat: NatMode
  /** The address the host itself holds (the primary interface's IPv4). */
  readonly local: string
}

/**
 * `mapperSettled` is false while a first mapping attempt is still running after a change: then a private host has
 * nothing to publish yet (undefined), so peers do not see the LAN address flash up before the mapping.
 */
export function reachability(
  net: NetState,
  mapping: MappingView | undefined,
  localPort: number,
  mapperSettled: boolean,
): Reachability | undefined {
  const local = net.primary?.ipv4
  if (!local) return undefined
  if (mapping) return { endpoint: { ...mapping.external }, nat: mapping.protocol, local }
  if (!isRfc1918(local)) return { endpoint: { address: local, port: localPort }, nat: 'public', local }
  if (!mapperSettled) return undefined
  return { endpoint: { address: local, port: localPort }, nat: 'unmapped', local }
}
