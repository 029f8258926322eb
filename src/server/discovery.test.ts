import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Rcode } from '../dns/wire/header.js'
import { RRType } from '../dns/wire/rr-table.js'
import type { PeerNode, ServiceConfig } from './config.js'
import { discoveryRRs } from './discovery.js'
import { ZoneAnswerer } from './query.js'
import { ZoneIndex } from './zone-index.js'

const ZONE = 'members.example.'
const base: ServiceConfig = {
  zone: ZONE,
  nsName: `ns1.${ZONE}`,
  nsAddrs: ['192.0.2.1'],
  hostmaster: `hostmaster.${ZONE}`,
  dnsPort: 53,
  tlsPort: 853,
  leaseMinSec: 2,
  leaseMaxSec: 5,
  infraTtlSec: 300,
  negativeTtlSec: 60,
  fudgeSec: 300,
}

test('discovery SRV: one node keeps 0 0; a cluster lists this node first, then its live peers, weight 1, no duplicates', () => {
  const name = `_dns-update._udp.alice.${ZONE}`
  assert.deepEqual(
    discoveryRRs(base, name, false).map((r) => r.text),
    [`0 0 53 ns1.${ZONE}`],
  )
  let peers: PeerNode[] = [
    { nsName: `ns2.${ZONE}`, nsAddrs: ['192.0.2.2'], dnsPort: 53, tlsPort: 853 },
    { nsName: `ns3.${ZONE}`, nsAddrs: ['192.0.2.3', '2001:db8::3'], dnsPort: 5353, tlsPort: undefined },
    { nsName: `ns2.${ZONE}`, nsAddrs: ['192.0.2.2'], dnsPort: 53, tlsPort: 853 },
  ]
  const cfg = { ...base, peers: () => peers }
  assert.deepEqual(
    discoveryRRs(cfg, name, false).map((r) => r.text),
    [`0 1 53 ns1.${ZONE}`, `0 1 53 ns2.${ZONE}`, `0 1 5353 ns3.${ZONE}`],
  )
  // A node without TLS is advertised with its plain port for the -tls names (as a single node is).
  assert.deepEqual(
    discoveryRRs(cfg, `_dns-push-tls._tcp.alice.${ZONE}`, true).map((r) => r.text),
    [`0 1 853 ns1.${ZONE}`, `0 1 853 ns2.${ZONE}`, `0 1 5353 ns3.${ZONE}`],
  )
  const q = new ZoneAnswerer({ cfg, index: new ZoneIndex(ZONE), serial: () => 1, isUser: () => true })
  const srv = q.answer(name, RRType.SRV, undefined)
  assert.equal(srv.rcode, Rcode.NOERROR)
  assert.deepEqual(
    srv.additionals.map((r) => `${r.name} ${(r.data as { address: string }).address}`),
    [`ns1.${ZONE} 192.0.2.1`, `ns2.${ZONE} 192.0.2.2`, `ns3.${ZONE} 192.0.2.3`, `ns3.${ZONE} 2001:db8::3`],
  )
  // A peer's name is answered (publicly) with its addresses; once it is gone, ns3 is again a name an account could
  // own, private like any other (REFUSED unsigned).
  const a = q.answer(`ns3.${ZONE}`, RRType.AAAA, undefined)
  assert.deepEqual(
    a.answers.map((r) => (r.data as { address: string }).address),
    ['2001:db8::3'],
  )
  peers = []
  assert.equal(q.answer(`ns3.${ZONE}`, RRType.AAAA, undefined).rcode, Rcode.REFUSED)
  assert.deepEqual(
    discoveryRRs(cfg, name, false).map((r) => r.text),
    [`0 0 53 ns1.${ZONE}`],
  )
})
