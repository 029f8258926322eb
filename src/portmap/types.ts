// The contract shared by the three mapping protocols (pcp.ts, natpmp.ts, upnp.ts) and the PortMapper
// (mapper.ts) that drives them, plus the socket edge they need beyond src/io/datagram.ts (multicast).

import type { DatagramSocket } from '../io/datagram.js'
import { UdpSocket } from '../io/datagram.js'

export type PortmapProtocol = 'pcp' | 'natpmp' | 'upnp'
export type TransportProtocol = 'udp' | 'tcp'

export interface AddrPort {
  readonly address: string
  readonly port: number
}

export interface MapRequest {
  readonly protocol: TransportProtocol
  /** The LAN address of this host: PCP's client IP, UPnP's NewInternalClient. */
  readonly internalAddress: string
  readonly internalPort: number
  /** The external port we ask for; the issue asks for the internal port. */
  readonly suggestedExternalPort: number
  readonly lifetimeSec: number
}

export interface MapResult {
  readonly external: AddrPort
  /** Lifetime the gateway granted (UPnP: the lease we asked for; 0 there means "permanent"). */
  readonly lifetimeSec: number
  /** The gateway's epoch shows it lost its state since our last exchange (RFC 6886 3.6, RFC 6887 8.5). */
  readonly gatewayRestarted: boolean
}

/** What a datagram heard on the announcement port (224.0.0.1:5350) or an SSDP NOTIFY means. */
export type GatewayAnnouncement =
  | { readonly kind: 'natpmp-address'; readonly epochSec: number; readonly address: string }
  | { readonly kind: 'pcp-announce'; readonly epochSec: number }
  | {
      readonly kind: 'ssdp-alive'
      readonly location: string
      /** BOOTID.UPNP.ORG (UDA 1.1 1.2.2): the same for every alive until the device restarts. */
      readonly bootId?: string
    }
  | { readonly kind: 'ssdp-byebye' }

/** One protocol's client, bound to one gateway. Requests are serialized by the caller (PortMapper). */
export interface MappingClient {
  readonly protocol: PortmapProtocol
  /**
   * Asks the gateway something cheap that needs no state (PCP ANNOUNCE, NAT-PMP external address, SSDP
   * M-SEARCH plus the device description): resolves when it answers in this protocol.
   */
  probe(opts?: { maxTries?: number }): Promise<void>
  /** Creates or renews the mapping. Throws PortmapResultError / PortmapTimeoutError / PortmapAbortedError. */
  map(req: MapRequest, opts?: { maxTries?: number }): Promise<MapResult>
  /** Deletes the mapping made by `map` (lifetime 0). */
  unmap(req: MapRequest, opts?: { maxTries?: number }): Promise<void>
  /** The gateway announced its epoch (PCP ANNOUNCE, NAT-PMP address announcement); UPnP has none. */
  announced?(epochSec: number): void
  /** Fails the request in flight with PortmapAbortedError; the client stays usable. */
  cancel(): void
  close(): Promise<void>
}

/** The RFC 6886 3.1 retransmission schedule: first retry after `initialMs`, doubling, `maxTries` sends. */
export interface RetrySchedule {
  readonly initialMs: number
  readonly maxTries: number
}

export const RFC6886_RETRY: RetrySchedule = Object.freeze({ initialMs: 250, maxTries: 9 })

/** Socket factory for the port mapper: unicast request sockets, and multicast listeners. */
export interface PortmapSockets {
  /** A new unbound UDP socket. `multicastInterface` picks the interface for multicast sends (SSDP M-SEARCH). */
  udp(opts?: { multicastInterface?: string }): DatagramSocket
  /** A socket bound to `port` on all addresses (address reuse on) that joined `group` on `interfaceAddress`. */
  multicast(group: string, port: number, interfaceAddress: string): Promise<DatagramSocket>
}

/** A UDP socket whose multicast sends leave on the interface holding `interfaceAddress`. */
class MulticastSendSocket extends UdpSocket {
  readonly #interfaceAddress: string
  constructor(interfaceAddress: string) {
    super()
    this.#interfaceAddress = interfaceAddress
  }
  override async bind(port: number, address?: string): Promise<{ address: string; port: number }> {
    const a = await super.bind(port, address)
    this.raw.setMulticastInterface(this.#interfaceAddress)
    return a
  }
}

/** node:dgram sockets. */
export class SystemPortmapSockets implements PortmapSockets {
  udp(opts: { multicastInterface?: string } = {}): DatagramSocket {
    return opts.multicastInterface ? new MulticastSendSocket(opts.multicastInterface) : new UdpSocket()
  }

  async multicast(group: string, port: number, interfaceAddress: string): Promise<DatagramSocket> {
    const s = new UdpSocket({ reuseAddr: true })
    await s.bind(port)
    try {
      s.raw.addMembership(group, interfaceAddress)
    } catch {
      // 224.0.0.1 (all hosts) is joined by the kernel on every multicast-capable interface: the join may fail
      // with EADDRINUSE and the socket still receives the group's traffic.
    }
    return s
  }
}
