// Listening for what a gateway multicasts about itself: NAT-PMP external-address announcements (RFC 6886
// 3.2.1) and PCP ANNOUNCE (RFC 6887 14.1.3) on 224.0.0.1:5350, and SSDP NOTIFY (UDA 1.1 1.2) on
// 239.255.255.250:1900. miniupnpd 2.3.1 sends a PCP ANNOUNCE and an ssdp:alive when it starts, and a NAT-PMP
// announcement plus a PCP ANNOUNCE when its WAN address changes (RECIPES.md section 1).

import type { DatagramSocket, RemoteInfo } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import { decodeNatPmpAnnouncement } from './natpmp.js'
import { decodePcpAnnouncement } from './pcp.js'
import { parseNotify, SSDP_GROUP } from './ssdp.js'
import type { GatewayAnnouncement, PortmapSockets } from './types.js'

/** Version 0 is a NAT-PMP address announcement, version 2 a PCP ANNOUNCE. */
export function decodeAnnouncement(msg: Buffer): GatewayAnnouncement | undefined {
  return msg[0] === 0 ? decodeNatPmpAnnouncement(msg) : decodePcpAnnouncement(msg)
}

export interface AnnouncementListenerOptions {
  /** null: no NAT-PMP/PCP listener. */
  readonly announceGroup: string | null
  readonly announcePort: number
  /** null: no SSDP NOTIFY listener. */
  readonly ssdpPort: number | null
  /** Only datagrams for which this holds are decoded (the current default gateway). */
  readonly accept: (from: RemoteInfo) => boolean
  readonly onAnnouncement: (a: GatewayAnnouncement) => void
}

export class AnnouncementListener {
  readonly #sockets: PortmapSockets
  readonly #log: Logger
  readonly #opts: AnnouncementListenerOptions
  #open: DatagramSocket[] = []
  #address: string | undefined
  /** Announcements accepted, by kind; datagrams dropped (not from the gateway, or not parsing). */
  readonly counts = new Map<GatewayAnnouncement['kind'], number>()
  drops = 0

  constructor(deps: { sockets: PortmapSockets; log: Logger }, opts: AnnouncementListenerOptions) {
    this.#sockets = deps.sockets
    this.#log = deps.log
    this.#opts = opts
  }

  /** Listens on the interface holding `interfaceAddress` (re-opens when it changed). */
  async listen(interfaceAddress: string): Promise<void> {
    if (this.#address === interfaceAddress) return
    await this.close()
    this.#address = interfaceAddress
    const open = async (group: string, port: number, decode: (m: Buffer) => GatewayAnnouncement | undefined) => {
      try {
        const s = await this.#sockets.multicast(group, port, interfaceAddress)
        s.onMessage((msg, from) => this.#receive(msg, from, decode))
        this.#open.push(s)
      } catch (e) {
        this.#log.warn('portmap.listen-failed', { group, port, error: String(e) })
      }
    }
    const o = this.#opts
    if (o.announceGroup) await open(o.announceGroup, o.announcePort, decodeAnnouncement)
    if (o.ssdpPort !== null) await open(SSDP_GROUP, o.ssdpPort, parseNotify)
  }

  async close(): Promise<void> {
    const ls = this.#open
    this.#open = []
    this.#address = undefined
    await Promise.all(ls.map((s) => s.close()))
  }

  #receive(msg: Buffer, from: RemoteInfo, decode: (m: Buffer) => GatewayAnnouncement | undefined): void {
    let a: GatewayAnnouncement | undefined
    if (this.#opts.accept(from)) {
      try {
        a = decode(msg)
      } catch {
        a = undefined
      }
    }
    if (!a) {
      this.drops++
      if (this.#log.enabled('debug'))
        this.#log.debug('portmap.announcement-dropped', { from: from.address, len: msg.length })
      return
    }
    this.counts.set(a.kind, (this.counts.get(a.kind) ?? 0) + 1)
    this.#log.info('portmap.announcement', { ...a })
    this.#opts.onAnnouncement(a)
  }
}
