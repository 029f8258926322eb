// SSDP, UPnP Device Architecture 1.1 section 1: M-SEARCH discovery of the gateway's Internet Gateway Device
// and parsing of the NOTIFY announcements (ssdp:alive after a gateway restart, ssdp:byebye) it multicasts.

import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import { PortmapAbortedError, PortmapTimeoutError, PortmapWireError } from './errors.js'
import type { GatewayAnnouncement, PortmapSockets, RetrySchedule } from './types.js'
import { RFC6886_RETRY } from './types.js'
import { retransmitDelayMs } from './udp-transaction.js'

export const SSDP_PORT = 1900
export const SSDP_GROUP = '239.255.255.250'
export const IGD_DEVICE_TYPE = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1'
/** UDA 1.1 1.3.2: seconds a device may wait before answering a multicast M-SEARCH. */
const SSDP_MX_SEC = 1
const MAX_SSDP_MESSAGE_LEN = 8192

export function encodeMSearch(searchTarget: string = IGD_DEVICE_TYPE): Buffer {
  return Buffer.from(
    `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_GROUP}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: ${SSDP_MX_SEC}\r\nST: ${searchTarget}\r\n\r\n`,
    'latin1',
  )
}

export interface SsdpMessage {
  /** "HTTP/1.1 200 OK" for a search response, "NOTIFY * HTTP/1.1" or "M-SEARCH * HTTP/1.1" for requests. */
  readonly startLine: string
  /** Header names lower-cased. */
  readonly headers: ReadonlyMap<string, string>
}

export function parseSsdpMessage(buf: Buffer): SsdpMessage {
  if (buf.length > MAX_SSDP_MESSAGE_LEN) throw new PortmapWireError('Ssdp', 0, 'too long')
  const text = buf.toString('latin1')
  const lines = text.split(/\r?\n/)
  const startLine = lines[0] ?? ''
  if (!/^(HTTP\/1\.[01] \d{3}|NOTIFY \* HTTP\/1\.[01]|M-SEARCH \* HTTP\/1\.[01])/.test(startLine))
    throw new PortmapWireError('Ssdp.startLine', 0, 'not SSDP')
  const headers = new Map<string, string>()
  for (const line of lines.slice(1)) {
    if (line === '') break
    const colon = line.indexOf(':')
    if (colon <= 0) throw new PortmapWireError('Ssdp.header', text.indexOf(line), 'no colon')
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
  }
  return { startLine, headers }
}

export interface SsdpSearchResult {
  readonly location: string
  readonly searchTarget: string
  readonly server: string
}

/** A 200 response to M-SEARCH naming an IGD, or undefined for anything else. */
export function parseSearchResponse(buf: Buffer): SsdpSearchResult | undefined {
  const m = parseSsdpMessage(buf)
  if (!/^HTTP\/1\.[01] 200/.test(m.startLine)) return undefined
  const location = m.headers.get('location')
  const st = m.headers.get('st') ?? ''
  if (!location || !st.includes(':InternetGatewayDevice:')) return undefined
  return { location, searchTarget: st, server: m.headers.get('server') ?? '' }
}

/**
 * A NOTIFY from an IGD: alive (sent on start, so after a restart, and again every notify interval) or byebye. The
 * alive's BOOTID.UPNP.ORG tells a restart from a repeat.
 */
export function parseNotify(buf: Buffer): GatewayAnnouncement | undefined {
  const m = parseSsdpMessage(buf)
  if (!m.startLine.startsWith('NOTIFY')) return undefined
  const nt = m.headers.get('nt') ?? ''
  if (!nt.includes(':InternetGatewayDevice:')) return undefined
  const nts = m.headers.get('nts')
  if (nts === 'ssdp:byebye') return { kind: 'ssdp-byebye' }
  const location = m.headers.get('location')
  const bootId = m.headers.get('bootid.upnp.org')
  if (nts === 'ssdp:alive' && location) return { kind: 'ssdp-alive', location, ...(bootId ? { bootId } : {}) }
  return undefined
}

export interface SsdpDiscoverDeps {
  readonly clock: Clock
  readonly log: Logger
  readonly sockets: PortmapSockets
}

export interface SsdpDiscoverOptions {
  readonly gateway: string
  /** LAN address of this host: multicast M-SEARCH leaves on its interface. */
  readonly interfaceAddress?: string
  /** @default 1900 */
  readonly port?: number
  /** Multicast group for M-SEARCH, or null for unicast only (tests on loopback). @default 239.255.255.250 */
  readonly multicastGroup?: string | null
  /** @default RFC6886_RETRY */
  readonly retry?: RetrySchedule
  /** Set to abandon the search (PortMapper stop/refresh). */
  readonly signal?: AbortSignal
}

/**
 * Finds the gateway's IGD. Each try sends M-SEARCH unicast to the gateway first, then to the multicast group.
 * Why both: some LANs and hosts lose multicast, and the unicast query goes through; strict devices answer only
 * multicast (tailscale/tailscale#3197); and the unicast query, sent first, teaches a stateful host firewall to
 * expect the gateway's unicast answer to the multicast query. Answers from hosts other than the gateway are
 * ignored: the mapping must be on the default route's NAT.
 */
export async function discoverIgd(deps: SsdpDiscoverDeps, opts: SsdpDiscoverOptions): Promise<SsdpSearchResult> {
  const retry = opts.retry ?? RFC6886_RETRY
  const port = opts.port ?? SSDP_PORT
  const group = opts.multicastGroup === undefined ? SSDP_GROUP : opts.multicastGroup
  const sock = deps.sockets.udp(opts.interfaceAddress ? { multicastInterface: opts.interfaceAddress } : {})
  await sock.bind(0, opts.interfaceAddress)
  const msg = encodeMSearch()
  let timer: TimerHandle | undefined
  let drops = 0
  let removeAbort = (): void => {}
  try {
    return await new Promise<SsdpSearchResult>((resolve, reject) => {
      const signal = opts.signal
      const onAbort = (): void => reject(new PortmapAbortedError('upnp'))
      if (signal?.aborted) {
        onAbort()
        return
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      removeAbort = () => signal?.removeEventListener('abort', onAbort)
      sock.onMessage((buf, from) => {
        try {
          const r = parseSearchResponse(buf)
          if (!r) return void drops++
          const host = new URL(r.location).hostname
          if (from.address !== opts.gateway && host !== opts.gateway) return void drops++
          resolve(r)
        } catch {
          drops++
        }
      })
      let n = 0
      const send = (): void => {
        if (n === retry.maxTries) {
          reject(new PortmapTimeoutError('upnp', n))
          return
        }
        n++
        sock.send(msg, 0, msg.length, port, opts.gateway)
        if (group) sock.send(msg, 0, msg.length, port, group)
        timer = deps.clock.setTimeout(send, retransmitDelayMs(retry, n))
      }
      send()
    })
  } finally {
    removeAbort()
    deps.clock.clearTimeout(timer)
    if (drops) deps.log.debug('ssdp.drops', { drops })
    await sock.close()
  }
}
