// A home router for tests that speaks all three mapping protocols (after tailscale's TestIGD): NAT-PMP and
// PCP on one UDP socket (told apart by the version byte), SSDP M-SEARCH on another, and the IGD description
// and SOAP control over an HTTP handler. It counts requests per protocol so tests assert exact numbers,
// runs on FakeNetwork (with FakeClock) or on real loopback sockets, and can restart (forget everything,
// epoch back to 0, multicast a PCP ANNOUNCE and an SSDP alive, as miniupnpd 2.3.1 does).

import http from 'node:http'
import type { Clock } from '../io/clock.js'
import type { DatagramSocket, RemoteInfo } from '../io/datagram.js'
import { decodeNatPmpRequest, encodeNatPmpResponse, type NatPmpResponse, NatPmpResult } from './natpmp.js'
import { decodePcpRequest, encodePcpResponse, IanaProtocol, PCP_VERSION, PcpResult } from './pcp.js'
import { parseSsdpMessage } from './ssdp.js'
import type { AddrPort, PortmapProtocol } from './types.js'
import { type HttpFn, type HttpRequest, type HttpResponse, xmlLeaf } from './upnp.js'

export interface FakeMapping {
  readonly via: PortmapProtocol
  readonly protocol: 'udp' | 'tcp'
  readonly internalAddress: string
  readonly internalPort: number
  readonly externalPort: number
  readonly expiresAtMs: number
  readonly nonce?: Buffer
}

export interface FakeGatewayOptions {
  readonly externalAddress: string
  readonly enabled?: readonly PortmapProtocol[]
  /** Where multicast announcements go (FakeNetwork: 224.0.0.1:5350; loopback: the client's listener). */
  readonly announceTo?: AddrPort
  /** Where SSDP NOTIFY goes. */
  readonly notifyTo?: AddrPort
  /** Base URL of the HTTP server, for LOCATION. */
  readonly httpBase: string
  /** Cap on granted lifetimes (like miniupnpd's max_lifetime). @default 86400 */
  readonly maxLifetimeSec?: number
}

const WAN_IP_SERVICE = 'urn:schemas-upnp-org:service:WANIPConnection:1'
const MS_PER_SEC = 1000
const DEFAULT_MAX_LIFETIME_SEC = 86400

export class FakeGateway {
  readonly #clock: Clock
  readonly #pxp: DatagramSocket
  readonly #ssdp: DatagramSocket
  readonly #opts: FakeGatewayOptions
  #epochStartMs: number
  externalAddress: string
  /** Base URL of the HTTP side, for LOCATION (set after the server listens). */
  httpBase: string
  announceTo: AddrPort | undefined
  notifyTo: AddrPort | undefined
  enabled: Set<PortmapProtocol>
  readonly mappings = new Map<string, FakeMapping>()
  /** Requests received, per protocol (SSDP M-SEARCH, GET and SOAP all count as 'upnp'). */
  readonly requests: Record<PortmapProtocol, number> = { pcp: 0, natpmp: 0, upnp: 0 }
  /** Every request: protocol, operation and Clock.monotonic() time. */
  readonly log: { protocol: PortmapProtocol; op: string; atMs: number }[] = []
  /** Requests of a protocol to ignore (counted, not answered): simulates loss. */
  readonly dropNext: Record<PortmapProtocol, number> = { pcp: 0, natpmp: 0, upnp: 0 }
  #nextPort = 50000

  constructor(deps: { clock: Clock; pxpSocket: DatagramSocket; ssdpSocket: DatagramSocket }, opts: FakeGatewayOptions) {
    this.#clock = deps.clock
    this.#pxp = deps.pxpSocket
    this.#ssdp = deps.ssdpSocket
    this.#opts = opts
    this.externalAddress = opts.externalAddress
    this.httpBase = opts.httpBase
    this.announceTo = opts.announceTo
    this.notifyTo = opts.notifyTo
    this.enabled = new Set(opts.enabled ?? ['pcp', 'natpmp', 'upnp'])
    this.#epochStartMs = deps.clock.monotonic()
    this.#pxp.onMessage((m, f) => this.#onPxp(m, f))
    this.#ssdp.onMessage((m, f) => this.#onSsdp(m, f))
  }

  get epochSec(): number {
    return Math.floor((this.#clock.monotonic() - this.#epochStartMs) / MS_PER_SEC)
  }

  /** Forgets every mapping, restarts the epoch, multicasts a PCP ANNOUNCE and an SSDP alive with a new BOOTID. */
  restart(): void {
    this.mappings.clear()
    this.#epochStartMs = this.#clock.monotonic()
    this.#bootId++
    this.#announcePcp()
    this.#notifyAlive()
  }

  /** New WAN address: NAT-PMP announcement and PCP ANNOUNCE (miniupnpd also restarts the PCP epoch). */
  setExternalAddress(address: string): void {
    this.externalAddress = address
    this.#epochStartMs = this.#clock.monotonic()
    const to = this.announceTo
    if (to && this.enabled.has('natpmp')) {
      const b = encodeNatPmpResponse({
        op: 'external-address',
        resultCode: 0,
        epochSec: this.epochSec,
        externalAddress: address,
      })
      this.#pxp.send(b, 0, b.length, to.port, to.address)
    }
    this.#announcePcp()
  }

  /** miniupnpd sends it whenever its NAT-PMP/PCP side is on (one switch enables both). */
  #announcePcp(): void {
    const to = this.announceTo
    if (!to || !(this.enabled.has('pcp') || this.enabled.has('natpmp'))) return
    const b = encodePcpResponse({
      opcode: 'announce',
      resultCode: 0,
      lifetimeSec: 0,
      epochSec: this.epochSec,
      options: [],
    })
    this.#pxp.send(b, 0, b.length, to.port, to.address)
  }

  /** The ssdp:alive an IGD repeats every notify interval while it runs (same BOOTID.UPNP.ORG). */
  repeatAlive(): void {
    this.#notifyAlive()
  }

  #bootId = 1

  #notifyAlive(): void {
    const to = this.notifyTo
    if (!to || !this.enabled.has('upnp')) return
    const b = Buffer.from(
      `NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n` +
        `NTS: ssdp:alive\r\nLOCATION: ${this.httpBase}/rootDesc.xml\r\nUSN: uuid:fake::IGD\r\n` +
        `BOOTID.UPNP.ORG: ${this.#bootId}\r\n\r\n`,
    )
    this.#ssdp.send(b, 0, b.length, to.port, to.address)
  }

  #count(protocol: PortmapProtocol, op: string): boolean {
    this.requests[protocol]++
    this.log.push({ protocol, op, atMs: this.#clock.monotonic() })
    if (this.dropNext[protocol] > 0) {
      this.dropNext[protocol]--
      return false
    }
    return this.enabled.has(protocol)
  }

  #lifetime(requested: number): number {
    return Math.min(requested, this.#opts.maxLifetimeSec ?? DEFAULT_MAX_LIFETIME_SEC)
  }

  #allocate(protocol: 'udp' | 'tcp', suggested: number, internalAddress: string, internalPort: number): number {
    const mine = (p: number): boolean => {
      const m = this.mappings.get(`${protocol}/${p}`)
      return !m || (m.internalAddress === internalAddress && m.internalPort === internalPort)
    }
    if (suggested && mine(suggested)) return suggested
    while (!mine(this.#nextPort)) this.#nextPort++
    return this.#nextPort++
  }

  #findByInternal(protocol: 'udp' | 'tcp', internalAddress: string, internalPort: number): FakeMapping | undefined {
    for (const m of this.mappings.values())
      if (m.protocol === protocol && m.internalAddress === internalAddress && m.internalPort === internalPort) return m
    return undefined
  }

  #onPxp(msg: Buffer, from: RemoteInfo): void {
    const b = msg[0] === PCP_VERSION ? this.#answerPcp(msg, from) : this.#answerNatPmp(msg, from)
    if (b) this.#pxp.send(b, 0, b.length, from.port, from.address)
  }

  #answerPcp(msg: Buffer, from: RemoteInfo): Buffer | undefined {
    const reply = (b: Buffer): Buffer => b
    {
      let req: ReturnType<typeof decodePcpRequest>
      try {
        req = decodePcpRequest(msg)
      } catch {
        return
      }
      if (!this.#count('pcp', req.opcode === 'map' ? (req.lifetimeSec ? 'map' : 'delete') : 'announce')) {
        if (!this.enabled.has('pcp') && this.enabled.has('natpmp'))
          return reply(
            encodeNatPmpResponse({
              op: 'external-address',
              resultCode: NatPmpResult.UnsupportedVersion,
              epochSec: this.epochSec,
              externalAddress: '0.0.0.0',
            }),
          )
        return
      }
      const base = { lifetimeSec: 0, epochSec: this.epochSec, options: [] }
      if (req.opcode === 'announce') return reply(encodePcpResponse({ opcode: 'announce', resultCode: 0, ...base }))
      const m = req.map
      const protocol = m.protocol === IanaProtocol.UDP ? 'udp' : 'tcp'
      const fail = (resultCode: number): Buffer =>
        reply(
          encodePcpResponse({
            opcode: 'map',
            resultCode,
            ...base,
            map: { ...m, externalPort: 0, externalAddress: '0.0.0.0' },
          }),
        )
      if (req.clientAddress !== from.address) return fail(PcpResult.AddressMismatch)
      const existing = this.#findByInternal(protocol, from.address, m.internalPort)
      if (existing?.nonce && !existing.nonce.equals(m.nonce)) return fail(PcpResult.NotAuthorized)
      if (req.lifetimeSec === 0) {
        if (existing) this.mappings.delete(`${protocol}/${existing.externalPort}`)
        return reply(
          encodePcpResponse({
            opcode: 'map',
            resultCode: 0,
            ...base,
            map: { ...m, externalAddress: this.externalAddress },
          }),
        )
      }
      const externalPort =
        existing?.externalPort ?? this.#allocate(protocol, m.externalPort, from.address, m.internalPort)
      const lifetimeSec = this.#lifetime(req.lifetimeSec)
      this.mappings.set(`${protocol}/${externalPort}`, {
        via: 'pcp',
        protocol,
        internalAddress: from.address,
        internalPort: m.internalPort,
        externalPort,
        expiresAtMs: this.#clock.monotonic() + lifetimeSec * MS_PER_SEC,
        nonce: Buffer.from(m.nonce),
      })
      return reply(
        encodePcpResponse({
          opcode: 'map',
          resultCode: 0,
          lifetimeSec,
          epochSec: this.epochSec,
          options: [],
          map: { ...m, externalPort, externalAddress: this.externalAddress },
        }),
      )
    }
  }

  #answerNatPmp(msg: Buffer, from: RemoteInfo): Buffer | undefined {
    const reply = (b: Buffer): Buffer => b
    let req: ReturnType<typeof decodeNatPmpRequest>
    try {
      req = decodeNatPmpRequest(msg)
    } catch {
      return
    }
    if (!this.#count('natpmp', req.op === 'map' ? (req.lifetimeSec ? 'map' : 'delete') : 'address')) return
    const epochSec = this.epochSec
    if (req.op === 'external-address')
      return reply(
        encodeNatPmpResponse({
          op: 'external-address',
          resultCode: 0,
          epochSec,
          externalAddress: this.externalAddress,
        }),
      )
    const existing = this.#findByInternal(req.protocol, from.address, req.internalPort)
    let rsp: NatPmpResponse
    if (req.lifetimeSec === 0) {
      if (existing) this.mappings.delete(`${req.protocol}/${existing.externalPort}`)
      rsp = {
        op: 'map',
        protocol: req.protocol,
        resultCode: 0,
        epochSec,
        internalPort: req.internalPort,
        externalPort: 0,
        lifetimeSec: 0,
      }
    } else {
      const externalPort =
        existing?.externalPort ??
        this.#allocate(req.protocol, req.suggestedExternalPort, from.address, req.internalPort)
      const lifetimeSec = this.#lifetime(req.lifetimeSec)
      this.mappings.set(`${req.protocol}/${externalPort}`, {
        via: 'natpmp',
        protocol: req.protocol,
        internalAddress: from.address,
        internalPort: req.internalPort,
        externalPort,
        expiresAtMs: this.#clock.monotonic() + lifetimeSec * MS_PER_SEC,
      })
      rsp = {
        op: 'map',
        protocol: req.protocol,
        resultCode: 0,
        epochSec,
        internalPort: req.internalPort,
        externalPort,
        lifetimeSec,
      }
    }
    return reply(encodeNatPmpResponse(rsp))
  }

  #onSsdp(msg: Buffer, from: RemoteInfo): void {
    let m: ReturnType<typeof parseSsdpMessage>
    try {
      m = parseSsdpMessage(msg)
    } catch {
      return
    }
    if (!m.startLine.startsWith('M-SEARCH')) return
    if (!this.#count('upnp', 'm-search')) return
    const b = Buffer.from(
      `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n` +
        `USN: uuid:fake::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: fake-gateway UPnP/1.1\r\n` +
        `LOCATION: ${this.httpBase}/rootDesc.xml\r\n\r\n`,
    )
    this.#ssdp.send(b, 0, b.length, from.port, from.address)
  }

  /** The IGD's HTTP side: device description and WANIPConnection:1 control. `client` is the peer's address. */
  handleHttp(req: {
    method: string
    path: string
    headers: Record<string, string>
    body: string
    client: string
  }): HttpResponse {
    if (req.method === 'GET' && req.path === '/rootDesc.xml') {
      if (!this.#count('upnp', 'description')) return { status: 404, body: '' }
      return { status: 200, body: this.#description() }
    }
    if (req.method !== 'POST' || req.path !== '/ctl/IPConn') return { status: 404, body: '' }
    const action = (req.headers.soapaction ?? '').replace(/"/g, '').split('#')[1] ?? ''
    if (!this.#count('upnp', action)) return { status: 503, body: '' }
    const arg = (n: string): string => xmlLeaf(req.body, n) ?? ''
    const ok = (out: Record<string, string | number> = {}): HttpResponse => ({
      status: 200,
      body:
        `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>` +
        `<u:${action}Response xmlns:u="${WAN_IP_SERVICE}">` +
        Object.entries(out)
          .map(([k, v]) => `<${k}>${v}</${k}>`)
          .join('') +
        `</u:${action}Response></s:Body></s:Envelope>`,
    })
    const fault = (code: number, desc: string): HttpResponse => ({
      status: 500,
      body:
        `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>` +
        `<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>` +
        `<UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode>` +
        `<errorDescription>${desc}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`,
    })
    const protocol = arg('NewProtocol').toLowerCase() === 'tcp' ? 'tcp' : 'udp'
    const externalPort = Number(arg('NewExternalPort'))
    switch (action) {
      case 'GetExternalIPAddress':
        return ok({ NewExternalIPAddress: this.externalAddress })
      case 'AddPortMapping': {
        const cur = this.mappings.get(`${protocol}/${externalPort}`)
        const internalAddress = arg('NewInternalClient')
        if (internalAddress !== req.client) return fault(606, 'Action not authorized')
        if (cur && cur.internalAddress !== internalAddress) return fault(718, 'ConflictInMappingEntry')
        const leaseSec = Number(arg('NewLeaseDuration'))
        this.mappings.set(`${protocol}/${externalPort}`, {
          via: 'upnp',
          protocol,
          internalAddress,
          internalPort: Number(arg('NewInternalPort')),
          externalPort,
          expiresAtMs: leaseSec ? this.#clock.monotonic() + leaseSec * MS_PER_SEC : Number.POSITIVE_INFINITY,
        })
        return ok()
      }
      case 'GetSpecificPortMappingEntry': {
        const cur = this.mappings.get(`${protocol}/${externalPort}`)
        if (!cur) return fault(714, 'NoSuchEntryInArray')
        return ok({
          NewInternalPort: cur.internalPort,
          NewInternalClient: cur.internalAddress,
          NewEnabled: 1,
          NewPortMappingDescription: 'autotunnel',
          NewLeaseDuration: 0,
        })
      }
      case 'DeletePortMapping':
        if (!this.mappings.delete(`${protocol}/${externalPort}`)) return fault(714, 'NoSuchEntryInArray')
        return ok()
      default:
        return fault(401, 'Invalid Action')
    }
  }

  /** An HttpFn that calls handleHttp directly (FakeNetwork tests), as if from `client`. */
  httpFn(client: string): HttpFn {
    return async (r: HttpRequest) => {
      const u = new URL(r.url)
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(r.headers)) headers[k.toLowerCase()] = v
      return this.handleHttp({ method: r.method, path: u.pathname, headers, body: r.body ?? '', client })
    }
  }

  #description(): string {
    return (
      '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion>' +
      '<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>fake</friendlyName>' +
      '<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType>' +
      '<controlURL>/ctl/L3F</controlURL></service></serviceList><deviceList><device>' +
      '<deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList><device>' +
      '<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><serviceList><service>' +
      `<serviceType>${WAN_IP_SERVICE}</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>` +
      '<controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL>' +
      '</service></serviceList></device></deviceList></device></deviceList></device></root>'
    )
  }
}

/** Serves `gw.handleHttp` on a real HTTP server (loopback tests). Resolves to the listening server. */
export function serveFakeGatewayHttp(gw: FakeGateway, host: string, port = 0): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v
      const r = gw.handleHttp({
        method: req.method ?? 'GET',
        path: new URL(req.url ?? '/', 'http://x').pathname,
        headers,
        body: Buffer.concat(chunks).toString('utf8'),
        client: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
      })
      res.writeHead(r.status, { 'Content-Type': 'text/xml; charset="utf-8"' })
      res.end(r.body)
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve(server))
  })
}
