import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { assertRoundTripOrWireError } from '../../test/vectors/round-trip.js'
import { FakeClock } from '../io/clock.fake.js'
import { type FakeDatagramSocket, FakeNetwork } from '../io/datagram.fake.js'
import type { RemoteInfo } from '../io/datagram.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { PortmapResultError, PortmapTimeoutError, PortmapWireError } from './errors.js'
import {
  decodeNatPmpAnnouncement,
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  encodeNatPmpRequest,
  encodeNatPmpResponse,
  NatPmpClient,
  type NatPmpRequest,
  type NatPmpResponse,
} from './natpmp.js'
import { driveFakeClock } from './suite.js'

failOnLeakedResources()

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

// Layouts of RFC 6886 3.2 (external address) and 3.3 (MAP), field by field.
const REQUESTS: { name: string; req: NatPmpRequest; wire: string }[] = [
  { name: 'external address request (3.2)', req: { op: 'external-address' }, wire: '00 00' },
  {
    name: 'MAP UDP 4500 -> 4500, 3600 s (3.3)',
    req: { op: 'map', protocol: 'udp', internalPort: 4500, suggestedExternalPort: 4500, lifetimeSec: 3600 },
    wire: '00 01 0000 1194 1194 00000e10',
  },
  {
    name: 'MAP TCP 8080 -> 80, 7200 s (3.3)',
    req: { op: 'map', protocol: 'tcp', internalPort: 8080, suggestedExternalPort: 80, lifetimeSec: 7200 },
    wire: '00 02 0000 1f90 0050 00001c20',
  },
  {
    name: 'delete: lifetime 0 and external port 0 (3.4)',
    req: { op: 'map', protocol: 'udp', internalPort: 4500, suggestedExternalPort: 0, lifetimeSec: 0 },
    wire: '00 01 0000 1194 0000 00000000',
  },
]

const RESPONSES: { name: string; rsp: NatPmpResponse; wire: string }[] = [
  {
    name: 'external address response, epoch 0x1234, 203.0.113.1 (3.2)',
    rsp: { op: 'external-address', resultCode: 0, epochSec: 0x1234, externalAddress: '203.0.113.1' },
    wire: '00 80 0000 00001234 cb007101',
  },
  {
    name: 'MAP UDP response, external 40000, 3600 s (3.3)',
    rsp: {
      op: 'map',
      protocol: 'udp',
      resultCode: 0,
      epochSec: 5,
      internalPort: 4500,
      externalPort: 40000,
      lifetimeSec: 3600,
    },
    wire: '00 81 0000 00000005 1194 9c40 00000e10',
  },
  {
    name: 'MAP TCP response with result 2, not authorized (3.5)',
    rsp: { op: 'map', protocol: 'tcp', resultCode: 2, epochSec: 9, internalPort: 80, externalPort: 0, lifetimeSec: 0 },
    wire: '00 82 0002 00000009 0050 0000 00000000',
  },
]

describe('NAT-PMP codec (RFC 6886)', () => {
  for (const c of REQUESTS)
    test(`request: ${c.name}`, () => {
      assert.equal(encodeNatPmpRequest(c.req).toString('hex'), hex(c.wire).toString('hex'))
      assert.deepEqual(decodeNatPmpRequest(hex(c.wire)), c.req)
    })
  for (const c of RESPONSES)
    test(`response: ${c.name}`, () => {
      assert.equal(encodeNatPmpResponse(c.rsp).toString('hex'), hex(c.wire).toString('hex'))
      assert.deepEqual(decodeNatPmpResponse(hex(c.wire)), c.rsp)
    })

  test('miniupnpd 2.3.1 address announcement captured on 224.0.0.1:5350 (RECIPES.md section 1)', () => {
    assert.deepEqual(decodeNatPmpAnnouncement(hex('0080000000000005cb007101')), {
      kind: 'natpmp-address',
      epochSec: 5,
      address: '203.0.113.1',
    })
  })

  test('an error response cut after the epoch decodes with zero fields; a short success is a WireError', () => {
    assert.deepEqual(decodeNatPmpResponse(hex('00 81 0003 00000007')), {
      op: 'map',
      protocol: 'udp',
      resultCode: 3,
      epochSec: 7,
      internalPort: 0,
      externalPort: 0,
      lifetimeSec: 0,
    })
    assert.throws(() => decodeNatPmpResponse(hex('00 81 0000 00000007')), PortmapWireError)
  })

  const BAD: [string, string][] = [
    ['empty', ''],
    ['version 2 (PCP) is not NAT-PMP', '02 80 0000 00000000 00000000'],
    ['request opcode in a response', '00 01 0000 00000005 1194 9c40 00000e10'],
    ['unknown opcode 3', '00 83 0000 00000005 1194 9c40 00000e10'],
    ['truncated header', '00 80 00'],
  ]
  for (const [name, wire] of BAD)
    test(`rejects ${name}`, () => assert.throws(() => decodeNatPmpResponse(hex(wire)), PortmapWireError))

  test('property: arbitrary bytes decode to a value that re-encodes to an equal value, or throw WireError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), (bytes) => {
        const b = Buffer.from(bytes)
        assertRoundTripOrWireError(
          b,
          [
            [decodeNatPmpResponse, encodeNatPmpResponse],
            [decodeNatPmpRequest, encodeNatPmpRequest],
          ],
          PortmapWireError,
        )
      }),
      { numRuns: 2000 },
    )
  })
})

describe('NatPmpClient timing (FakeClock)', () => {
  const setup = async (answerAfter: number, onRequest?: (from: RemoteInfo) => void) => {
    const clock = new FakeClock()
    const net = new FakeNetwork()
    const gw = net.socket('192.168.1.1')
    await gw.bind(5351)
    const seen: number[] = []
    gw.onMessage((msg, from) => {
      seen.push(clock.monotonic())
      onRequest?.(from)
      if (seen.length <= answerAfter) return
      const req = decodeNatPmpRequest(msg)
      const rsp: NatPmpResponse =
        req.op === 'external-address'
          ? { op: 'external-address', resultCode: 0, epochSec: 100, externalAddress: '203.0.113.1' }
          : {
              op: 'map',
              protocol: req.protocol,
              resultCode: 0,
              epochSec: 100,
              internalPort: req.internalPort,
              externalPort: req.suggestedExternalPort,
              lifetimeSec: req.lifetimeSec,
            }
      const b = encodeNatPmpResponse(rsp)
      gw.send(b, 0, b.length, from.port, from.address)
    })
    const sockets = { udp: () => net.socket('192.168.1.10'), multicast: async () => net.socket('0.0.0.0') }
    const client = new NatPmpClient({ clock, log: nullLogger, sockets }, { gateway: '192.168.1.1' })
    return { clock, gw, seen, client, net }
  }

  test("issue 16 finding 11: a forged answer from another host of the LAN is dropped and counted; the gateway's is taken", async () => {
    const forged = encodeNatPmpResponse({
      op: 'external-address',
      resultCode: 0,
      epochSec: 100,
      externalAddress: '198.18.0.66',
    })
    const spoofers: FakeDatagramSocket[] = []
    const { clock, seen, client, net } = await setup(1, (from) => {
      // Every request is answered first by a host beside the gateway, from the NAT-PMP port and from another one.
      for (const s of spoofers) s.send(forged, 0, forged.length, from.port, from.address)
    })
    for (const [addr, port] of [
      ['192.168.1.66', 5351],
      ['192.168.1.66', 40000],
    ] as const) {
      const s = net.socket(addr)
      await s.bind(port)
      spoofers.push(s)
    }
    const p = client.externalAddress()
    await driveFakeClock(clock, 2000, 1)
    assert.deepEqual(await p, { address: '203.0.113.1', restarted: false })
    assert.equal(seen.length, 2)
    assert.deepEqual(client.counters, { sends: 2, drops: 4 })
    await client.close()
  })

  test('first retry after 250 ms, doubling (RFC 6886 3.1): answered on the 4th send', async () => {
    const { clock, seen, client } = await setup(3)
    const p = client.externalAddress()
    await driveFakeClock(clock, 2000, 1)
    assert.deepEqual(await p, { address: '203.0.113.1', restarted: false })
    assert.deepEqual(seen, [0, 250, 750, 1750])
    assert.deepEqual(client.counters, { sends: 4, drops: 0 })
    assert.equal(clock.pending, 0)
    await client.close()
  })

  test('gives up after 9 sends, 127.75 s after the first (64 s wait after the last)', async () => {
    const { clock, seen, client } = await setup(Number.POSITIVE_INFINITY)
    const p = client.externalAddress()
    const failed = assert.rejects(p, (e) => e instanceof PortmapTimeoutError && e.tries === 9)
    await driveFakeClock(clock, 127_749, 250)
    assert.deepEqual(seen, [0, 250, 750, 1750, 3750, 7750, 15750, 31750, 63750])
    assert.equal(clock.pending, 1)
    await driveFakeClock(clock, 1, 1)
    await failed
    assert.equal(clock.pending, 0)
    await client.close()
  })

  test('maxTries is configurable per call', async () => {
    const { clock, seen, client } = await setup(Number.POSITIVE_INFINITY)
    const failed = assert.rejects(client.externalAddress({ maxTries: 2 }), PortmapTimeoutError)
    await driveFakeClock(clock, 750, 1)
    await failed
    assert.deepEqual(seen, [0, 250])
    await client.close()
  })

  test('a non-zero result code fails at once with PortmapResultError', async () => {
    const clock = new FakeClock()
    const net = new FakeNetwork()
    const gw = net.socket('192.168.1.1')
    await gw.bind(5351)
    gw.onMessage((_m, from) => {
      const b = encodeNatPmpResponse({ op: 'external-address', resultCode: 3, epochSec: 1, externalAddress: '0.0.0.0' })
      gw.send(b, 0, b.length, from.port, from.address)
    })
    const sockets = { udp: () => net.socket('192.168.1.10'), multicast: async () => net.socket('0.0.0.0') }
    const client = new NatPmpClient({ clock, log: nullLogger, sockets }, { gateway: '192.168.1.1' })
    const failed = assert.rejects(client.externalAddress(), (e) => e instanceof PortmapResultError && e.code === 3)
    await driveFakeClock(clock, 1, 1)
    await failed
    assert.equal(clock.pending, 0)
    await client.close()
  })
})
