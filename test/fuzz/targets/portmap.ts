// Datagrams from the gateway's port 5351 and the 224.0.0.1:5350 announcements: NAT-PMP (RFC 6886, version 0)
// and PCP (RFC 6887, version 2) share the port, so one target feeds both decoders, the announcement
// demultiplexer, and (for the test gateway) the request decoders. Decoded responses re-encode and decode to
// the same value when they were full length.
import { decodeAnnouncement } from '../../../src/portmap/announcements.js'
import { PortmapWireError } from '../../../src/portmap/errors.js'
import {
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  encodeNatPmpResponse,
  NATPMP_ADDRESS_RESPONSE_LEN,
  NATPMP_MAP_RESPONSE_LEN,
} from '../../../src/portmap/natpmp.js'
import {
  decodePcpRequest,
  decodePcpResponse,
  encodePcpRequest,
  encodePcpResponse,
  PCP_HEADER_LEN,
  PCP_MAP_PAYLOAD_LEN,
} from '../../../src/portmap/pcp.js'
import { assertRoundTrip, expectOnly } from './harness.js'

export function fuzz(data: Buffer): void {
  const bad = [PortmapWireError]
  expectOnly(bad, () => decodeAnnouncement(data))
  const nat = expectOnly(bad, () => decodeNatPmpResponse(data))
  const full = nat?.op === 'map' ? NATPMP_MAP_RESPONSE_LEN : NATPMP_ADDRESS_RESPONSE_LEN
  if (nat && data.length >= full)
    assertRoundTrip('NAT-PMP response', nat, decodeNatPmpResponse(encodeNatPmpResponse(nat)))
  expectOnly(bad, () => decodeNatPmpRequest(data))
  const pcp = expectOnly(bad, () => decodePcpResponse(data))
  if (pcp && (pcp.opcode === 'announce' || data.length >= PCP_HEADER_LEN + PCP_MAP_PAYLOAD_LEN))
    assertRoundTrip('PCP response', pcp, decodePcpResponse(encodePcpResponse(pcp)))
  const req = expectOnly(bad, () => decodePcpRequest(data))
  if (req) assertRoundTrip('PCP request', req, decodePcpRequest(encodePcpRequest(req)))
}
