// UPnP IGD port mapping (WANIPConnection:1 and :2, WANPPPConnection:1 service templates): the device
// description's control URL, the SOAP 1.1 actions GetExternalIPAddress, AddPortMapping,
// GetSpecificPortMappingEntry and DeletePortMapping, and a client for one gateway. Discovery is in ssdp.ts.
// XML is handled by hand: we read a handful of leaf elements and never need a tree.

import http from 'node:http'
import type { Clock } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import { PortmapAbortedError, PortmapResultError, PortmapTimeoutError, PortmapWireError } from './errors.js'
import { discoverIgd } from './ssdp.js'
import type { MappingClient, MapRequest, MapResult, PortmapSockets, RetrySchedule } from './types.js'

/** Service types we can drive, best first (IGD:2 offers WANIPConnection:2, a superset of :1). */
export const UPNP_SERVICE_TYPES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
] as const

/** UPnP IGD WANIPConnection:2 section 2.4 error codes we act on. */
export const UpnpError = {
  InvalidArgs: 402,
  NoSuchEntryInArray: 714,
  ConflictInMappingEntry: 718,
  OnlyPermanentLeasesSupported: 725,
} as const

export const UPNP_DESCRIPTION = 'autotunnel'
const MAX_HTTP_BODY_LEN = 256 * 1024
const HTTP_OK = 200
const HTTP_SERVER_ERROR = 500
/** Ports tried after a ConflictInMappingEntry before giving up. */
const CONFLICT_RETRIES = 3
const FIRST_UNPRIVILEGED_PORT = 1024
const PORT_COUNT = 65536

export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** The highest Unicode code point: a character reference above it is not a character (XML 1.0 4.1, WFC: Legal Character). */
const MAX_CODE_POINT = 0x10ffff

export function xmlUnescape(s: string): string {
  return (
    s
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      // Left as written when out of range: String.fromCodePoint would throw a RangeError out of the SOAP decoder.
      .replace(/&#(\d+);/g, (ref, d: string) => (Number(d) <= MAX_CODE_POINT ? String.fromCodePoint(Number(d)) : ref))
      .replace(/&amp;/g, '&')
  )
}

/**
 * An element's start tag: `<`, an optional namespace prefix, the name, attributes. The attributes stop at the
 * next `<` as well as at `>` (XML forbids `<` in attribute values): with `[^>]*` an unclosed start tag made
 * every later search scan to the end of the body, quadratic in its length (seconds for a 256 KiB body, found by
 * fuzzing).
 */
const startTag = (name: string): string => `<(?:[\\w.-]+:)?${name}(?:\\s[^<>]*)?>`
const endTag = (name: string): string => `</(?:[\\w.-]+:)?${name}\\s*>`

/** Text of the first element named `name` (any namespace prefix) inside `xml`, or undefined. */
export function xmlLeaf(xml: string, name: string): string | undefined {
  const m = new RegExp(`${startTag(name)}([^<]*)${endTag(name)}`).exec(xml)
  return m ? xmlUnescape(m[1]!.trim()) : undefined
}

/**
 * The contents of each `name` element, in order, not nested. Each search starts where the previous one ended
 * and the scan stops at the first start tag without an end tag: one pass over `xml`, where a lazy
 * `<service>([\s\S]*?)</service>` regex rescanned the rest of the body from every unclosed start tag.
 */
function* xmlBlocks(xml: string, name: string): Generator<string> {
  const start = new RegExp(startTag(name), 'g')
  const end = new RegExp(endTag(name), 'g')
  for (;;) {
    const s = start.exec(xml)
    if (!s) return
    end.lastIndex = start.lastIndex
    const e = end.exec(xml)
    if (!e) return
    yield xml.slice(start.lastIndex, e.index)
    start.lastIndex = end.lastIndex
  }
}

export interface IgdService {
  readonly serviceType: string
  readonly controlUrl: string
}

/** Picks the best WAN connection service of a device description; URLs resolve against URLBase or `location`. */
export function parseDeviceDescription(xml: string, location: string): IgdService | undefined {
  const base = xmlLeaf(xml, 'URLBase') || location
  const found = new Map<string, string>()
  for (const block of xmlBlocks(xml, 'service')) {
    const type = xmlLeaf(block, 'serviceType')
    const control = xmlLeaf(block, 'controlURL')
    if (type && control && !found.has(type)) found.set(type, control)
  }
  for (const t of UPNP_SERVICE_TYPES) {
    const control = found.get(t)
    if (control === undefined) continue
    try {
      return { serviceType: t, controlUrl: new URL(control, base).toString() }
    } catch {
      return undefined
    }
  }
  return undefined
}

export function encodeSoapRequest(
  serviceType: string,
  action: string,
  args: readonly [string, string | number][],
): string {
  const body = args.map(([k, v]) => `<${k}>${xmlEscape(String(v))}</${k}>`).join('')
  return (
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${xmlEscape(serviceType)}">${body}</u:${action}></s:Body></s:Envelope>\r\n`
  )
}

/**
 * Reads a SOAP answer: the named output arguments of `<actionResponse>`, or a PortmapResultError carrying the
 * UPnPError errorCode of a fault.
 */
export function decodeSoapResponse(
  status: number,
  xml: string,
  action: string,
  outputs: readonly string[],
): Record<string, string> {
  const code = xmlLeaf(xml, 'errorCode')
  if (code !== undefined || status !== HTTP_OK) {
    const desc = xmlLeaf(xml, 'errorDescription') ?? `HTTP ${status}`
    throw new PortmapResultError('upnp', Number(code ?? status), `${action}: ${desc}`)
  }
  if (!new RegExp(`<(?:[\\w.-]+:)?${action}Response[\\s>/]`).test(xml))
    throw new PortmapWireError(`${action}Response`, 0, 'missing')
  const out: Record<string, string> = {}
  for (const name of outputs) out[name] = xmlLeaf(xml, name) ?? ''
  return out
}

export interface HttpRequest {
  readonly method: 'GET' | 'POST'
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string
  readonly timeoutMs: number
}

export interface HttpResponse {
  readonly status: number
  readonly body: string
}

export type HttpFn = (req: HttpRequest) => Promise<HttpResponse>

/** node:http, body capped at 256 KiB, timeout from the injected clock. */
export function nodeHttp(clock: Clock): HttpFn {
  return (r) =>
    new Promise((resolve, reject) => {
      const req = http.request(r.url, { method: r.method, headers: { ...r.headers, Connection: 'close' } }, (res) => {
        const chunks: Buffer[] = []
        let len = 0
        res.on('data', (c: Buffer) => {
          len += c.length
          if (len > MAX_HTTP_BODY_LEN) req.destroy(new Error('HTTP body too long'))
          else chunks.push(c)
        })
        res.on('end', () => {
          clock.clearTimeout(timer)
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })
        })
        res.on('error', (e) => {
          clock.clearTimeout(timer)
          reject(e)
        })
      })
      const timer = clock.setTimeout(() => req.destroy(new PortmapTimeoutError('upnp', 1)), r.timeoutMs)
      req.on('error', (e) => {
        clock.clearTimeout(timer)
        reject(e)
      })
      req.end(r.body)
    })
}

export interface UpnpClientDeps {
  readonly clock: Clock
  readonly log: Logger
  readonly random: Random
  readonly sockets: PortmapSockets
  /** @default nodeHttp(clock) */
  readonly http?: HttpFn
}

export interface UpnpClientOptions {
  readonly gateway: string
  /** LAN address used for multicast M-SEARCH and as NewInternalClient. */
  readonly interfaceAddress?: string
  /** @default 1900 */
  readonly ssdpPort?: number
  /** @default 239.255.255.250; null sends M-SEARCH unicast only */
  readonly ssdpMulticastGroup?: string | null
  /** M-SEARCH schedule. @default RFC6886_RETRY */
  readonly retry?: RetrySchedule
  /** Per HTTP request. @default 3000 */
  readonly httpTimeoutMs?: number
  /** Skip SSDP: the description URL (a known `rootDesc.xml`). */
  readonly location?: string
}

const DEFAULT_HTTP_TIMEOUT_MS = 3000

/** UPnP IGD against one gateway. Calls must not overlap (the PortMapper serializes them). */
export class UpnpClient implements MappingClient {
  readonly protocol = 'upnp' as const
  readonly #deps: UpnpClientDeps
  readonly #http: HttpFn
  readonly #opts: UpnpClientOptions
  #abort = new AbortController()
  #location: string | undefined
  #service: IgdService | undefined
  /** The external port of the mapping we hold, for renewal checks and the delete. */
  #mappedPort: number | undefined
  /** SOAP actions sent, by name: tests assert exact counts. */
  readonly actions = new Map<string, number>()

  constructor(deps: UpnpClientDeps, opts: UpnpClientOptions) {
    this.#deps = deps
    this.#http = deps.http ?? nodeHttp(deps.clock)
    this.#opts = opts
    this.#location = opts.location
  }

  get service(): IgdService | undefined {
    return this.#service
  }

  /** Forgets the control URL, so the next call discovers again (after an ssdp:alive with a new location). */
  forget(location?: string): void {
    this.#service = undefined
    this.#location = location
  }

  async #discover(maxTries?: number): Promise<IgdService> {
    if (this.#service) return this.#service
    if (!this.#location) {
      const retry = this.#opts.retry ?? { initialMs: 250, maxTries: 9 }
      const r = await discoverIgd(this.#deps, {
        gateway: this.#opts.gateway,
        interfaceAddress: this.#opts.interfaceAddress,
        port: this.#opts.ssdpPort,
        multicastGroup: this.#opts.ssdpMulticastGroup,
        retry: maxTries ? { ...retry, maxTries } : retry,
        signal: this.#abort.signal,
      })
      this.#location = r.location
    }
    const rsp = await this.#request({ method: 'GET', url: this.#location, headers: {} })
    if (rsp.status !== HTTP_OK) throw new PortmapResultError('upnp', rsp.status, `GET ${this.#location}`)
    const svc = parseDeviceDescription(rsp.body, this.#location)
    if (!svc) throw new PortmapWireError('IGD.serviceList', 0, 'no WANIPConnection or WANPPPConnection service')
    this.#deps.log.debug('upnp.discovered', { location: this.#location, ...svc })
    this.#service = svc
    return svc
  }

  async #request(req: Omit<HttpRequest, 'timeoutMs'>): Promise<HttpResponse> {
    const signal = this.#abort.signal
    if (signal.aborted) throw new PortmapAbortedError('upnp')
    const rsp = await this.#http({ ...req, timeoutMs: this.#opts.httpTimeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS })
    if (signal.aborted) throw new PortmapAbortedError('upnp')
    return rsp
  }

  async #soap(
    action: string,
    args: [string, string | number][],
    outputs: string[] = [],
  ): Promise<Record<string, string>> {
    const svc = await this.#discover()
    this.actions.set(action, (this.actions.get(action) ?? 0) + 1)
    const rsp = await this.#request({
      method: 'POST',
      url: svc.controlUrl,
      headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${svc.serviceType}#${action}"` },
      body: encodeSoapRequest(svc.serviceType, action, args),
    })
    if (rsp.status !== HTTP_OK && rsp.status !== HTTP_SERVER_ERROR)
      throw new PortmapResultError('upnp', rsp.status, `${action}: HTTP ${rsp.status}`)
    return decodeSoapResponse(rsp.status, rsp.body, action, outputs)
  }

  /** SSDP M-SEARCH (unless the location is known), then the device description. */
  async probe(opts: { maxTries?: number } = {}): Promise<void> {
    await this.#discover(opts.maxTries)
  }

  async externalAddress(opts: { maxTries?: number } = {}): Promise<string> {
    await this.#discover(opts.maxTries)
    const r = await this.#soap('GetExternalIPAddress', [], ['NewExternalIPAddress'])
    return r.NewExternalIPAddress ?? ''
  }

  /** True when the gateway still holds our mapping of `externalPort` to this host. */
  async mappingExists(req: MapRequest, externalPort: number): Promise<boolean> {
    try {
      const r = await this.#soap(
        'GetSpecificPortMappingEntry',
        [
          ['NewRemoteHost', ''],
          ['NewExternalPort', externalPort],
          ['NewProtocol', req.protocol.toUpperCase()],
        ],
        ['NewInternalPort', 'NewInternalClient'],
      )
      return Number(r.NewInternalPort) === req.internalPort && r.NewInternalClient === req.internalAddress
    } catch (e) {
      if (
        e instanceof PortmapResultError &&
        (e.code === UpnpError.NoSuchEntryInArray || e.code === UpnpError.InvalidArgs)
      )
        return false
      throw e
    }
  }

  async #add(req: MapRequest, externalPort: number, leaseSec: number): Promise<void> {
    await this.#soap('AddPortMapping', [
      ['NewRemoteHost', ''],
      ['NewExternalPort', externalPort],
      ['NewProtocol', req.protocol.toUpperCase()],
      ['NewInternalPort', req.internalPort],
      ['NewInternalClient', req.internalAddress],
      ['NewEnabled', 1],
      ['NewPortMappingDescription', UPNP_DESCRIPTION],
      ['NewLeaseDuration', leaseSec],
    ])
  }

  /**
   * GetExternalIPAddress, then AddPortMapping for the suggested port (another one on ConflictInMappingEntry,
   * a permanent lease on OnlyPermanentLeasesSupported). A renewal first asks whether the gateway still
   * has the mapping: UPnP has no epoch, so that is how a restart shows.
   */
  async map(req: MapRequest, opts: { maxTries?: number } = {}): Promise<MapResult> {
    const address = await this.externalAddress(opts)
    let gatewayRestarted = false
    if (this.#mappedPort !== undefined) gatewayRestarted = !(await this.mappingExists(req, this.#mappedPort))
    let port = this.#mappedPort ?? req.suggestedExternalPort
    let leaseSec = req.lifetimeSec
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#add(req, port, leaseSec)
        break
      } catch (e) {
        if (!(e instanceof PortmapResultError)) throw e
        if (e.code === UpnpError.OnlyPermanentLeasesSupported && leaseSec !== 0) leaseSec = 0
        else if (e.code === UpnpError.ConflictInMappingEntry && attempt < CONFLICT_RETRIES)
          port = FIRST_UNPRIVILEGED_PORT + this.#deps.random.int(PORT_COUNT - FIRST_UNPRIVILEGED_PORT)
        else throw e
      }
    }
    this.#mappedPort = port
    this.#deps.log.debug('upnp.mapped', { external: `${address}:${port}`, leaseSec })
    return { external: { address, port }, lifetimeSec: leaseSec, gatewayRestarted }
  }

  async unmap(req: MapRequest): Promise<void> {
    const port = this.#mappedPort
    if (port === undefined) return
    await this.#soap('DeletePortMapping', [
      ['NewRemoteHost', ''],
      ['NewExternalPort', port],
      ['NewProtocol', req.protocol.toUpperCase()],
    ])
    this.#mappedPort = undefined
  }

  cancel(): void {
    this.#abort.abort()
    this.#abort = new AbortController()
  }

  async close(): Promise<void> {
    this.#abort.abort()
  }
}
