// What a UPnP IGD sends us: SSDP datagrams (search responses and NOTIFY, UDA 1.1 1.2-1.3) and, over HTTP, its
// device description and SOAP answers (UPnP IGD WANIPConnection). The first octet picks the decoder; the rest
// is the datagram or the HTTP body. Bodies reach these parsers after nodeHttp's 256 KiB cap: with selector bit
// 0x40 the rest is repeated up to that size, so a pattern that makes a parser super-linear shows as a hang
// (the fuzzer's per-input timeout) instead of hiding in inputs of a few KiB.
import { PortmapResultError, PortmapWireError } from '../../../src/portmap/errors.js'
import { parseNotify, parseSearchResponse, parseSsdpMessage } from '../../../src/portmap/ssdp.js'
import { decodeSoapResponse, parseDeviceDescription, xmlEscape, xmlUnescape } from '../../../src/portmap/upnp.js'
import { expectOnly, selector } from './harness.js'

const LOCATION = 'http://192.168.1.1:5000/rootDesc.xml'
const ACTIONS = ['GetExternalIPAddress', 'AddPortMapping', 'AddAnyPortMapping', 'DeletePortMapping'] as const
const OUTPUTS = ['NewExternalIPAddress', 'NewReservedPort']
const HTTP_OK = 200
const HTTP_SERVER_ERROR = 500
const SELECTORS = 4
const AMPLIFY = 0x40
/** nodeHttp's body cap (src/portmap/upnp.ts MAX_HTTP_BODY_LEN). */
const MAX_HTTP_BODY_LEN = 256 * 1024

function body(sel: number, rest: Buffer): string {
  if (!(sel & AMPLIFY) || rest.length === 0) return rest.toString('utf8')
  return rest
    .toString('latin1')
    .repeat(Math.ceil(MAX_HTTP_BODY_LEN / rest.length))
    .slice(0, MAX_HTTP_BODY_LEN)
}

export function fuzz(data: Buffer): void {
  const [sel, rest] = selector(data)
  switch (sel % SELECTORS) {
    case 0:
      expectOnly([PortmapWireError], () => parseSsdpMessage(rest))
      expectOnly([PortmapWireError], () => parseSearchResponse(rest))
      expectOnly([PortmapWireError], () => parseNotify(rest))
      return
    case 1:
      parseDeviceDescription(body(sel, rest), LOCATION)
      return
    case 2: {
      const xml = body(sel, rest)
      const action = ACTIONS[(sel >> 2) % ACTIONS.length]!
      const status = sel & 0x80 ? HTTP_SERVER_ERROR : HTTP_OK
      expectOnly([PortmapWireError, PortmapResultError], () => decodeSoapResponse(status, xml, action, OUTPUTS))
      return
    }
    default: {
      const s = rest.toString('utf8')
      const back = xmlUnescape(xmlEscape(s))
      if (back !== s) throw new Error('xmlUnescape(xmlEscape(s)) !== s')
      xmlUnescape(s)
    }
  }
}
