import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { assertRoundTripOrWireError } from '../../test/vectors/round-trip.js'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { PortmapResultError, PortmapWireError } from './errors.js'
import {
  decodePcpAnnouncement,
  decodePcpRequest,
  decodePcpResponse,
  encodePcpRequest,
  encodePcpResponse,
  PcpClient,
  type PcpRequest,
  type PcpResponse,
  PcpResult,
} from './pcp.js'
import { driveFakeClock } from './suite.js'

failOnLeakedResources()

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const NONCE = hex('0102030405060708090a0b0c')
const V4_MAPPED = '00000000 00000000 0000ffff'

// RFC 6887 7.1 request header, 7.2 response header, 11.1 MAP payload, field by field.
const REQUESTS: { name: string; req: PcpRequest; wire: string }[] = [
  {
    name: 'MAP UDP 4500, suggest 4500, 3600 s, client 10.0.1.10, no external address preference',
    req: {
      opcode: 'map',
      lifetimeSec: 3600,
      clientAddress: '10.0.1.10',
      map: { nonce: NONCE, protocol: 17, internalPort: 4500, externalPort: 4500, externalAddress: '0.0.0.0' },
      options: [],
    },
    wire:
      '02 01 0000 00000e10' +
      `${V4_MAPPED} 0a00010a` +
      '0102030405060708090a0b0c 11 000000 1194 1194' +
      `${V4_MAPPED} 00000000`,
  },
  {
    name: 'MAP delete (lifetime 0), TCP, with a THIRD_PARTY-style option padded to 4 bytes',
    req: {
      opcode: 'map',
      lifetimeSec: 0,
      clientAddress: '192.168.1.10',
      map: { nonce: NONCE, protocol: 6, internalPort: 8080, externalPort: 0, externalAddress: '0.0.0.0' },
      options: [{ code: 1, data: hex('c0a8010b c0a8') }],
    },
    wire:
      '02 01 0000 00000000' +
      `${V4_MAPPED} c0a8010a` +
      '0102030405060708090a0b0c 06 000000 1f90 0000' +
      `${V4_MAPPED} 00000000` +
      '01 00 0006 c0a8010bc0a8 0000',
  },
  {
    name: 'ANNOUNCE request from an IPv6 client',
    req: { opcode: 'announce', clientAddress: '2001:db8::1', options: [] },
    wire: '02 00 0000 00000000 20010db8000000000000000000000001',
  },
]

const RESPONSES: { name: string; rsp: PcpResponse; wire: string }[] = [
  {
    name: 'MAP success: 203.0.113.1:4500 for 3600 s, epoch 19',
    rsp: {
      opcode: 'map',
      resultCode: 0,
      lifetimeSec: 3600,
      epochSec: 19,
      map: { nonce: NONCE, protocol: 17, internalPort: 4500, externalPort: 4500, externalAddress: '203.0.113.1' },
      options: [],
    },
    wire:
      '02 81 00 00 00000e10 00000013 000000000000000000000000' +
      '0102030405060708090a0b0c 11 000000 1194 1194' +
      `${V4_MAPPED} cb007101`,
  },
  {
    name: 'MAP NOT_AUTHORIZED (result 2), as miniupnpd answers a delete with a new nonce',
    rsp: {
      opcode: 'map',
      resultCode: 2,
      lifetimeSec: 0,
      epochSec: 30,
      map: { nonce: NONCE, protocol: 17, internalPort: 4500, externalPort: 0, externalAddress: '0.0.0.0' },
      options: [],
    },
    wire:
      '02 81 00 02 00000000 0000001e 000000000000000000000000' +
      '0102030405060708090a0b0c 11 000000 1194 0000' +
      `${V4_MAPPED} 00000000`,
  },
]

describe('PCP codec (RFC 6887)', () => {
  for (const c of REQUESTS)
    test(`request: ${c.name}`, () => {
      assert.equal(encodePcpRequest(c.req).toString('hex'), hex(c.wire).toString('hex'))
      assert.deepEqual(decodePcpRequest(hex(c.wire)), c.req)
    })
  for (const c of RESPONSES)
    test(`response: ${c.name}`, () => {
      assert.equal(encodePcpResponse(c.rsp).toString('hex'), hex(c.wire).toString('hex'))
      assert.deepEqual(decodePcpResponse(hex(c.wire)), c.rsp)
    })

  test('miniupnpd 2.3.1 unsolicited ANNOUNCE captured on 224.0.0.1:5350 (RECIPES.md section 1)', () => {
    const wire = hex('0280 0000 00000000 0000002a 000000000000000000000000')
    assert.deepEqual(decodePcpAnnouncement(wire), { kind: 'pcp-announce', epochSec: 42 })
  })

  test('an IPv6 external address reads back in compressed form', () => {
    const rsp: PcpResponse = {
      opcode: 'map',
      resultCode: 0,
      lifetimeSec: 60,
      epochSec: 1,
      map: { nonce: NONCE, protocol: 17, internalPort: 1, externalPort: 2, externalAddress: '2001:db8::ff:0:1' },
      options: [],
    }
    assert.deepEqual(decodePcpResponse(encodePcpResponse(rsp)), rsp)
  })

  const BAD: [string, string][] = [
    ['a short header', '02 81 00 00 00000e10'],
    ['version 1', `01 81 00 00 00000e10 00000013 ${'00'.repeat(12)}`],
    ['a request (R bit clear) where a response is expected', `02 01 00 00 00000e10 00000013 ${'00'.repeat(12)}`],
    ['opcode PEER', `02 82 00 00 00000e10 00000013 ${'00'.repeat(12)}`],
    ['a MAP success without its payload', `02 81 00 00 00000e10 00000013 ${'00'.repeat(12)}`],
    ['an option overrunning the packet', `02 80 00 00 00000000 00000013 ${'00'.repeat(12)} 01 00 0008 0000`],
  ]
  for (const [name, wire] of BAD)
    test(`rejects ${name}`, () => assert.throws(() => decodePcpResponse(hex(wire)), PortmapWireError))

  test('property: arbitrary bytes round-trip or throw WireError (requests and responses)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.constantFrom(0x00, 0x01, 0x80, 0x81), (bytes, op) => {
        const b = Buffer.from(bytes)
        if (b.length > 1) {
          b[0] = 2
          b[1] = op
        }
        assertRoundTripOrWireError(
          b,
          [
            [decodePcpResponse, encodePcpResponse],
            [decodePcpRequest, encodePcpRequest],
          ],
          PortmapWireError,
        )
      }),
      { numRuns: 3000 },
    )
  })
})

describe('PcpClient', () => {
  const setup = async (answer: (req: PcpRequest, n: number) => PcpResponse | Buffer | undefined) => {
    const clock = new FakeClock()
    const net = new FakeNetwork()
    const gw = net.socket('192.168.1.1')
    await gw.bind(5351)
    const seen: { at: number; req: PcpRequest }[] = []
    gw.onMessage((msg, from) => {
      const req = decodePcpRequest(msg)
      seen.push({ at: clock.monotonic(), req })
      const r = answer(req, seen.length)
      if (!r) return
      const b = Buffer.isBuffer(r) ? r : encodePcpResponse(r)
      gw.send(b, 0, b.length, from.port, from.address)
    })
    const sockets = { udp: () => net.socket('192.168.1.10'), multicast: async () => net.socket('0.0.0.0') }
    const client = new PcpClient(
      { clock, log: nullLogger, random: new FakeRandom(1), sockets },
      { gateway: '192.168.1.1', internalAddress: '192.168.1.10' },
    )
    return { clock, seen, client }
  }
  const REQ = {
    protocol: 'udp',
    internalAddress: '192.168.1.10',
    internalPort: 4500,
    suggestedExternalPort: 4500,
    lifetimeSec: 3600,
  } as const
  const ok = (req: PcpRequest, epochSec: number): PcpResponse | undefined =>
    req.opcode === 'map'
      ? {
          opcode: 'map',
          resultCode: 0,
          lifetimeSec: req.lifetimeSec,
          epochSec,
          map: { ...req.map, externalAddress: '203.0.113.1' },
          options: [],
        }
      : undefined

  test('renewals and the delete reuse the nonce of the first MAP (miniupnpd refuses a new one)', async () => {
    const { clock, seen, client } = await setup((req) => ok(req, Math.floor(clock.monotonic() / 1000)))
    const p1 = client.map(REQ)
    await driveFakeClock(clock, 1)
    assert.deepEqual((await p1).external, { address: '203.0.113.1', port: 4500 })
    await driveFakeClock(clock, 1_800_000, 100_000)
    const p2 = client.map(REQ)
    await driveFakeClock(clock, 1)
    assert.equal((await p2).gatewayRestarted, false)
    const p3 = client.unmap(REQ)
    await driveFakeClock(clock, 1)
    await p3
    const nonces = seen.map((s) => (s.req.opcode === 'map' ? s.req.map.nonce.toString('hex') : ''))
    assert.equal(nonces.length, 3)
    assert.equal(new Set(nonces).size, 1)
    assert.deepEqual(
      seen.map((s) => (s.req.opcode === 'map' ? s.req.lifetimeSec : -1)),
      [3600, 3600, 0],
    )
    await client.close()
  })

  test('epoch going backwards (RFC 6887 8.5) marks the answer gatewayRestarted', async () => {
    let epoch = 1000
    const { clock, client } = await setup((req) => ok(req, epoch))
    const p1 = client.map(REQ)
    await driveFakeClock(clock, 1)
    assert.equal((await p1).gatewayRestarted, false)
    await driveFakeClock(clock, 10_000, 1000)
    epoch = 3
    const p2 = client.map(REQ)
    await driveFakeClock(clock, 1)
    assert.equal((await p2).gatewayRestarted, true)
    await client.close()
  })

  test('a NAT-PMP-only gateway (version 0 answer) fails at once with UNSUPP_VERSION', async () => {
    const { clock, seen, client } = await setup(() => hex('00 81 0001 00000005'))
    const failed = assert.rejects(
      client.map(REQ),
      (e) => e instanceof PortmapResultError && e.code === PcpResult.UnsuppVersion,
    )
    await driveFakeClock(clock, 1)
    await failed
    assert.equal(seen.length, 1)
    assert.equal(clock.pending, 0)
    await client.close()
  })

  test('answers for another nonce are dropped and counted; retransmission continues', async () => {
    const { clock, seen, client } = await setup((req, n) => {
      if (req.opcode !== 'map') return undefined
      const r = ok(req, 1)
      if (r?.opcode !== 'map') return undefined
      return n === 1 ? { ...r, map: { ...r.map, nonce: Buffer.alloc(12, 0xee) } } : r
    })
    const p = client.map(REQ)
    await driveFakeClock(clock, 300, 1)
    await p
    assert.deepEqual(
      seen.map((s) => s.at),
      [0, 250],
    )
    assert.deepEqual(client.counters, { sends: 2, drops: 1 })
    await client.close()
  })
})
