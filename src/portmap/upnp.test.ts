import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { PortmapResultError, PortmapTimeoutError, PortmapWireError } from './errors.js'
import { discoverIgd, encodeMSearch, parseNotify, parseSearchResponse, parseSsdpMessage } from './ssdp.js'
import { driveFakeClock } from './suite.js'
import { decodeSoapResponse, encodeSoapRequest, parseDeviceDescription, xmlLeaf, xmlUnescape } from './upnp.js'

failOnLeakedResources()

// Captured from miniupnpd 2.3.1 (Debian bookworm, nftables backend) in the lab, 2026-11-21.
const FIXTURES = fileURLToPath(new URL('../../../src/portmap/fixtures/miniupnpd-2.3.1/', import.meta.url))
const fixture = (name: string): string => readFileSync(FIXTURES + name, 'utf8')
/** The captures hold the HTTP status on the first line, then the body. */
const soapFixture = (name: string): { status: number; body: string } => {
  const text = fixture(name)
  const nl = text.indexOf('\n')
  return { status: Number(text.slice(0, nl)), body: text.slice(nl + 1) }
}

describe('UPnP IGD against miniupnpd 2.3.1 captures', () => {
  test('device description: WANIPConnection:2 control URL, resolved against LOCATION', () => {
    const svc = parseDeviceDescription(fixture('rootDesc.xml'), 'http://192.168.41.1:2189/rootDesc.xml')
    assert.deepEqual(svc, {
      serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2',
      controlUrl: 'http://192.168.41.1:2189/ctl/IPConn',
    })
  })

  test('GetExternalIPAddress response', () => {
    const r = soapFixture('GetExternalIPAddress.txt')
    assert.deepEqual(decodeSoapResponse(r.status, r.body, 'GetExternalIPAddress', ['NewExternalIPAddress']), {
      NewExternalIPAddress: '203.0.113.41',
    })
  })

  test('AddPortMapping: an empty, self-closing response element', () => {
    const r = soapFixture('AddPortMapping.txt')
    assert.deepEqual(decodeSoapResponse(r.status, r.body, 'AddPortMapping', []), {})
  })

  test('GetSpecificPortMappingEntry: entry found, and the 714 NoSuchEntryInArray fault', () => {
    const r = soapFixture('GetSpecificPortMappingEntry.txt')
    assert.deepEqual(
      decodeSoapResponse(r.status, r.body, 'GetSpecificPortMappingEntry', ['NewInternalPort', 'NewInternalClient']),
      {
        NewInternalPort: '4999',
        NewInternalClient: '192.168.41.10',
      },
    )
    const f = soapFixture('GetSpecificPortMappingEntry-714.txt')
    assert.throws(
      () => decodeSoapResponse(f.status, f.body, 'GetSpecificPortMappingEntry', []),
      (e) => e instanceof PortmapResultError && e.code === 714 && /NoSuchEntryInArray/.test(e.message),
    )
  })

  test('M-SEARCH response: LOCATION and ST, headers case-insensitive', () => {
    const r = parseSearchResponse(Buffer.from(fixture('msearch-response.txt')))
    assert.deepEqual(r, {
      location: 'http://192.168.41.1:2189/rootDesc.xml',
      searchTarget: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
      server: 'Debian/6.18.44-fc-v669 UPnP/1.1 MiniUPnPd/2.3.1',
    })
  })
})

describe('SSDP and SOAP codecs', () => {
  test('M-SEARCH for InternetGatewayDevice:1, byte-exact (UDA 1.1 1.3.2)', () => {
    assert.equal(
      encodeMSearch().toString(),
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n' +
        'ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n',
    )
  })

  test('NOTIFY alive / byebye for the IGD; other devices ignored', () => {
    const n = (nt: string, nts: string): Buffer =>
      Buffer.from(
        `NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: ${nt}\r\nNTS: ${nts}\r\nLOCATION: http://10.0.0.1:2189/rootDesc.xml\r\n\r\n`,
      )
    const igd = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1'
    assert.deepEqual(parseNotify(n(igd, 'ssdp:alive')), {
      kind: 'ssdp-alive',
      location: 'http://10.0.0.1:2189/rootDesc.xml',
    })
    assert.deepEqual(parseNotify(n(igd, 'ssdp:byebye')), { kind: 'ssdp-byebye' })
    assert.equal(parseNotify(n('urn:schemas-upnp-org:device:MediaServer:1', 'ssdp:alive')), undefined)
  })

  test('garbage is a WireError, never a crash', () => {
    assert.throws(() => parseSsdpMessage(Buffer.from('\x00\x01hello')), PortmapWireError)
    assert.throws(() => parseSsdpMessage(Buffer.from('HTTP/1.1 200 OK\r\nno colon here\r\n\r\n')), PortmapWireError)
  })

  test('SOAP request: arguments escaped, action namespaced by service type', () => {
    const xml = encodeSoapRequest('urn:schemas-upnp-org:service:WANIPConnection:1', 'AddPortMapping', [
      ['NewExternalPort', 4500],
      ['NewPortMappingDescription', 'a<b&c'],
    ])
    assert.match(xml, /<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">/)
    assert.match(
      xml,
      /<NewExternalPort>4500<\/NewExternalPort><NewPortMappingDescription>a&lt;b&amp;c<\/NewPortMappingDescription>/,
    )
    assert.equal(xmlLeaf(xml, 'NewPortMappingDescription'), 'a<b&c')
  })

  test('a description without a WAN connection service gives undefined; WANPPPConnection is accepted', () => {
    const desc = (t: string): string =>
      `<root><service><serviceType>${t}</serviceType><controlURL>/c</controlURL></service></root>`
    assert.equal(
      parseDeviceDescription(desc('urn:schemas-upnp-org:service:Layer3Forwarding:1'), 'http://1.2.3.4/'),
      undefined,
    )
    assert.deepEqual(
      parseDeviceDescription(desc('urn:schemas-upnp-org:service:WANPPPConnection:1'), 'http://1.2.3.4:5/d.xml'),
      {
        serviceType: 'urn:schemas-upnp-org:service:WANPPPConnection:1',
        controlUrl: 'http://1.2.3.4:5/c',
      },
    )
  })
})

describe('SSDP discovery timing (FakeClock)', () => {
  test('each try sends M-SEARCH unicast to the gateway, then multicast; retries at 250 ms doubling', async () => {
    const clock = new FakeClock()
    const net = new FakeNetwork()
    const seen: string[] = []
    const gw = net.socket('192.168.1.1')
    await gw.bind(1900)
    const group = net.socket('239.255.255.250')
    await group.bind(1900)
    gw.onMessage(() => seen.push(`unicast@${clock.monotonic()}`))
    group.onMessage(() => seen.push(`multicast@${clock.monotonic()}`))
    const sockets = { udp: () => net.socket('192.168.1.10'), multicast: async () => net.socket('0.0.0.0') }
    const failed = assert.rejects(
      discoverIgd(
        { clock, log: nullLogger, sockets },
        { gateway: '192.168.1.1', retry: { initialMs: 250, maxTries: 3 } },
      ),
      PortmapTimeoutError,
    )
    await driveFakeClock(clock, 1750, 1)
    await failed
    assert.deepEqual(seen, ['unicast@0', 'multicast@0', 'unicast@250', 'multicast@250', 'unicast@750', 'multicast@750'])
    assert.equal(clock.pending, 0)
  })

  test('an answer from a host other than the gateway is ignored', async () => {
    const clock = new FakeClock()
    const net = new FakeNetwork()
    const other = net.socket('192.168.1.99')
    await other.bind(1900)
    other.onMessage((_m, from) => {
      const b = Buffer.from(
        'HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://192.168.1.99:80/d.xml\r\n\r\n',
      )
      other.send(b, 0, b.length, from.port, from.address)
    })
    const sockets = { udp: () => net.socket('192.168.1.10'), multicast: async () => net.socket('0.0.0.0') }
    const failed = assert.rejects(
      discoverIgd(
        { clock, log: nullLogger, sockets },
        { gateway: '192.168.1.1', multicastGroup: null, retry: { initialMs: 250, maxTries: 1 } },
      ),
      PortmapTimeoutError,
    )
    await driveFakeClock(clock, 250, 1)
    await failed
  })
})

describe('UPnP parsing stays linear in the body size (nodeHttp accepts 256 KiB)', () => {
  const MAX_BODY = 256 * 1024
  const fill = (unit: string): string => unit.repeat(Math.ceil(MAX_BODY / unit.length)).slice(0, MAX_BODY)
  // Linear parsing takes a few ms; the quadratic regexes took seconds. The bound leaves room for a loaded machine.
  const BOUND_MS = 500
  const timed = (fn: () => unknown): number => {
    const start = performance.now()
    fn()
    return performance.now() - start
  }

  test('device description full of unclosed <service> tags (fuzzer: corpus/upnp/crash-timeout-218eef40)', () => {
    const ms = timed(() => parseDeviceDescription(fill('t<service>t</servecn</serviceTy'), 'http://1.2.3.4/'))
    assert.ok(ms < BOUND_MS, `took ${Math.round(ms)} ms`)
  })

  test('SOAP answer full of unclosed start tags of an output argument', () => {
    const xml = `<u:GetExternalIPAddressResponse>${fill('<NewExternalIPAddress ')}`
    let out: Record<string, string> | undefined
    const ms = timed(() => {
      out = decodeSoapResponse(200, xml, 'GetExternalIPAddress', ['NewExternalIPAddress'])
    })
    assert.ok(ms < BOUND_MS, `took ${Math.round(ms)} ms`)
    assert.deepEqual(out, { NewExternalIPAddress: '' })
  })

  test('element contents are still found after unclosed and attributed start tags', () => {
    const desc =
      '<root><service x="1"><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>' +
      '<controlURL>/ctl</controlURL></service><service></root>'
    assert.deepEqual(parseDeviceDescription(desc, 'http://1.2.3.4/'), {
      serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1',
      controlUrl: 'http://1.2.3.4/ctl',
    })
    assert.equal(xmlLeaf('<a:X b="<"><X>v</X>', 'X'), 'v')
  })
})

test('a numeric character reference beyond U+10FFFF stays as written instead of throwing RangeError', () => {
  assert.equal(
    xmlUnescape('&#65;&#1114111;&#1114112;&#99999999999;'),
    `A${String.fromCodePoint(0x10ffff)}&#1114112;&#99999999999;`,
  )
  const xml =
    '<u:GetExternalIPAddressResponse><NewExternalIPAddress>&#99999999;</NewExternalIPAddress></u:GetExternalIPAddressResponse>'
  assert.deepEqual(decodeSoapResponse(200, xml, 'GetExternalIPAddress', ['NewExternalIPAddress']), {
    NewExternalIPAddress: '&#99999999;',
  })
})
