import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import fc from 'fast-check'
import { totalDrops } from './counters.js'
import { ESP_MAX_OVERHEAD, ESP_PAYLOAD_OFFSET, type EspAlg, EspCrypto, IpProto } from './esp.js'
import { POISON_BYTE } from './pool.js'
import { parseIpv6 } from './sa-table.js'
import { ADDR_A, ADDR_B, ipv6, LateCopySocket, pair, settle, ULA_A, ULA_B } from './test-pair.js'

for (const alg of ['aes128gcm16', 'aes256gcm16', 'chacha20poly1305'] as EspAlg[]) {
  test(`two tunnels joined by fakes exchange IPv6 packets both ways (${alg})`, async (t) => {
    const { net, a, b } = await pair(t, { alg })
    const sent: Buffer[] = []
    for (let i = 0; i < 50; i++) {
      const p = ipv6(ULA_A, ULA_B, randomBytes(i * 27))
      sent.push(p)
      a.tun.inject(p)
    }
    const back = ipv6(ULA_B, ULA_A, Buffer.from('pong'))
    b.tun.inject(back)
    await settle()
    assert.deepEqual(b.tun.written, sent)
    assert.deepEqual(a.tun.written, [back])
    assert.equal(net.sent, 51)
    const ca = a.tunnel.counters()
    const cb = b.tunnel.counters()
    assert.equal(ca.txPackets, 50)
    assert.equal(cb.rxPackets, 50)
    assert.equal(cb.rxBytes, ca.txBytes)
    assert.equal(totalDrops(ca) + totalDrops(cb), 0)
    const pa = a.tunnel.peers()[0]!
    assert.equal(pa.ula, ULA_B)
    assert.equal(pa.txPackets, 50)
    assert.equal(pa.rxPackets, 1)
    assert.ok(pa.lastRxMs !== undefined)
    assert.equal(a.tunnel.poolStats().outstanding, 0, 'every slab came back after its send')
  })
}

test('only UDP with ESP leaves the host: no plaintext of the inner packet on the wire', async (t) => {
  const { net, a } = await pair(t)
  const wire: Buffer[] = []
  net.dropIf = (_f, _t, m) => {
    wire.push(Buffer.from(m))
    return false
  }
  const secret = Buffer.from('a very secret plaintext that must not appear on the wire')
  a.tun.inject(ipv6(ULA_A, ULA_B, secret))
  await settle()
  assert.equal(wire.length, 1)
  assert.equal(wire[0]!.readUInt32BE(0), 0xa0b0, 'ESP with the outbound SPI')
  assert.equal(wire[0]!.indexOf(secret.subarray(0, 12)), -1)
  assert.equal(wire[0]!.indexOf(parseIpv6(ULA_A).bytes), -1, 'inner addresses are encrypted too')
})

test('released slabs are poisoned and never reach the wire (slab returned only in the send callback)', async (t) => {
  const { b, a } = await pair(t, { wrapA: (s) => new LateCopySocket(s) })
  const sent: Buffer[] = []
  for (let i = 0; i < 20; i++) {
    const p = ipv6(ULA_A, ULA_B, Buffer.alloc(100, i))
    sent.push(p)
    a.tun.inject(p)
  }
  await settle()
  assert.deepEqual(b.tun.written, sent)
  assert.equal(b.tunnel.counters().drops.icv, 0)
  assert.equal(POISON_BYTE, 0xdb)
})

test('tampered, replayed, truncated, unknown-SPI and random datagrams are dropped and counted per reason', async (t) => {
  const { net, a, b } = await pair(t)
  const wire: Buffer[] = []
  net.dropIf = (_f, to, m) => {
    if (to === `${ADDR_B.address}:${ADDR_B.port}`) wire.push(Buffer.from(m))
    return false
  }
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('one')))
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('two')))
  await settle()
  assert.equal(b.tun.written.length, 2)
  net.dropIf = () => false
  const attacker = net.socket('192.0.2.66')
  await attacker.bind(9999)
  const shoot = (m: Buffer): void => attacker.send(m, 0, m.length, ADDR_B.port, ADDR_B.address)
  const good = wire[0]!
  shoot(good) // replay
  const tampered = Buffer.from(wire[1]!)
  tampered.writeUInt32BE(77, 4) // a fresh sequence number passes the replay pre-check, then fails the ICV
  tampered[tampered.length - 20]! ^= 0x40
  shoot(tampered) // ICV
  shoot(good.subarray(0, 30)) // truncated
  const unknown = Buffer.from(good)
  unknown.writeUInt32BE(0xdeadbeef, 0)
  shoot(unknown) // unknown SPI
  shoot(Buffer.from([1, 2])) // too short for anything
  shoot(Buffer.from([0xff])) // NAT keepalive: counted, not a drop
  await settle()
  const c = b.tunnel.counters()
  assert.equal(c.drops.replay, 1)
  assert.equal(c.drops.icv, 1)
  assert.equal(c.drops.truncated, 1)
  assert.equal(c.drops.unknown_spi, 1)
  assert.equal(c.drops.udp_short, 1)
  assert.equal(c.keepaliveRx, 1)
  assert.equal(c.roams, 0, 'nothing unauthenticated moves the endpoint')
  assert.equal(b.tun.written.length, 2)
  assert.deepEqual(b.tunnel.peers()[0]!.endpoint, ADDR_A)

  // Fuzz: random bytes and mutations of real packets never throw and never reach the TUN device.
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.nat(good.length - 1),
      fc.integer({ min: 1, max: 255 }),
      (r, at, x) => {
        const m = Buffer.from(good)
        m[at]! ^= x
        shoot(Buffer.from(r))
        shoot(m)
      },
    ),
    { numRuns: 500 },
  )
  await settle()
  assert.equal(b.tun.written.length, 2)
  // Still forwarding after the storm.
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('three')))
  await settle()
  assert.equal(b.tun.written.length, 3)
  await attacker.close()
})

test('inner packets must match the traffic selectors (peer ULA -> local ULA) and be IPv6', async (t) => {
  const { net, b, keys } = await pair(t)
  const forger = net.socket(ADDR_A.address)
  await forger.bind(4600)
  const c = new EspCrypto('aes128gcm16', 0xa0b0, keys.ab, true)
  let seq = 100
  const send = (inner: Buffer, nh: number = IpProto.IPV6): void => {
    const slab = Buffer.alloc(inner.length + ESP_MAX_OVERHEAD)
    inner.copy(slab, ESP_PAYLOAD_OFFSET)
    const n = c.sealInPlace(slab, inner.length, ++seq, nh)
    forger.send(slab, 0, n, ADDR_B.port, ADDR_B.address)
  }
  send(ipv6('fd00:cccc::3', ULA_B, Buffer.from('spoofed source')))
  send(ipv6(ULA_A, 'fd00:bbbb::99', Buffer.from('other destination')))
  send(ipv6(ULA_A, ULA_B, Buffer.from('ipv4 next header')), IpProto.IPV4)
  send(Buffer.from('not an ip packet at all, forty bytes long....'))
  await settle()
  const d = b.tunnel.counters().drops
  assert.equal(d.ts_mismatch, 2)
  assert.equal(d.bad_next_header, 1)
  assert.equal(d.bad_inner, 1)
  assert.equal(b.tun.written.length, 0)
  await forger.close()
})

test('send side drops what is not ours to send: not IPv6, foreign source, unknown peer, too big', async (t) => {
  const { a } = await pair(t)
  a.tun.inject(Buffer.from('45000014000000004000000000000000000000000000000000000000000000000000', 'hex'))
  a.tun.inject(ipv6('fd00:aaaa::9', ULA_B, Buffer.from('x')))
  a.tun.inject(ipv6(ULA_A, 'fd00:dddd::4', Buffer.from('x')))
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.alloc(a.tunnel.mtu)))
  await settle()
  const d = a.tunnel.counters().drops
  assert.deepEqual([d.not_ipv6, d.bad_source, d.no_peer, d.too_big], [1, 1, 1, 1])
  assert.equal(a.tunnel.counters().txPackets, 0)
})

test("relay route (docs/relay.md): ESP to a relayed peer leaves as ChannelData to the TURN server; ChannelData back is the peer's, no roaming", async (t) => {
  const { net, a, b } = await pair(t)
  const TURN = { address: '192.0.2.50', port: 3478 }
  const turn = net.socket(TURN.address)
  await turn.bind(TURN.port, TURN.address)
  t.after(() => turn.close())
  const atTurn: Buffer[] = []
  // The fake TURN server: strips the header and hands the payload to B as coming from A's address.
  turn.onMessage((m) => {
    atTurn.push(Buffer.from(m))
    net.deliver(
      { address: ADDR_A.address, port: ADDR_A.port, family: 'IPv4' },
      ADDR_B.address,
      ADDR_B.port,
      m.subarray(4),
    )
  })
  a.tunnel.setRelayRoute(ADDR_B, { ...TURN, channel: 0x4001 })
  assert.deepEqual(a.tunnel.peers()[0]!.endpoint?.relay, { ...TURN, channel: 0x4001 })
  // The route sticks to the address whoever sets the endpoint again (DNS, IKE).
  a.tunnel.setPeerEndpoint(ULA_B, { ...ADDR_B })
  assert.equal(a.tunnel.peers()[0]!.endpoint?.relay?.channel, 0x4001)
  const sent = [ipv6(ULA_A, ULA_B, Buffer.from('via relay 1')), ipv6(ULA_A, ULA_B, Buffer.from('via relay 22'))]
  for (const p of sent) a.tun.inject(p)
  await settle()
  assert.equal(atTurn.length, 2)
  for (const m of atTurn) {
    assert.equal(m.readUInt16BE(0), 0x4001)
    assert.equal(m.readUInt16BE(2), m.length - 4, 'length field = ESP datagram, no padding')
    assert.equal(m.readUInt32BE(4), 0xa0b0, 'ESP with the outbound SPI after the header')
  }
  assert.deepEqual(b.tun.written, sent)
  // Back: B -> (the test plays TURN) ChannelData from the TURN address -> A's relay demux -> delivered as B's.
  let offered = 0
  a.tunnel.setRelayDemux({
    ...TURN,
    offer: (m, deliver) => {
      offered++
      deliver(m.subarray(4), { address: ADDR_B.address, port: ADDR_B.port, family: 'IPv4' })
    },
  })
  net.dropIf = (_f, to, m) => {
    if (to !== `${ADDR_A.address}:${ADDR_A.port}`) return false
    const cd = Buffer.alloc(m.length + 4)
    cd.writeUInt16BE(0x4001, 0)
    cd.writeUInt16BE(m.length, 2)
    m.copy(cd, 4)
    net.dropIf = () => false
    net.deliver({ ...TURN, family: 'IPv4' }, ADDR_A.address, ADDR_A.port, cd)
    return true
  }
  const back = ipv6(ULA_B, ULA_A, Buffer.from('back through the relay'))
  b.tun.inject(back)
  await settle()
  assert.equal(offered, 1)
  assert.deepEqual(a.tun.written, [back])
  assert.equal(a.tunnel.counters().roams, 0, 'the relay is the path: no roaming to the TURN address')
  assert.equal(a.tunnel.peers()[0]!.endpoint?.address, ADDR_B.address)
  // Route removed: direct again.
  a.tunnel.setRelayRoute(ADDR_B, undefined)
  assert.equal(a.tunnel.peers()[0]!.endpoint?.relay, undefined)
  assert.equal(a.tunnel.poolStats().outstanding, 0)
})
