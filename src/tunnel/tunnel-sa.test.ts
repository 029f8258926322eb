import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { ADDR_A, ADDR_B, ipv6, MovableSocket, pair, settle, ULA_A, ULA_B } from './test-pair.js'

test('no SA: onNoSa fires, packets wait (bounded, drop-oldest), and flow once keys are installed', async (t) => {
  const clock = new FakeClock()
  const { a, b, keys } = await pair(t, { keys: false, clock, tunnelOpts: { noSaQueueLen: 4, noSaQueueMs: 3000 } })
  const calls: string[] = []
  a.tunnel.onNoSa((ula, pkt) => {
    calls.push(ula)
    assert.equal(pkt[0]! >> 4, 6)
  })
  const pkts = Array.from({ length: 6 }, (_, i) => ipv6(ULA_A, ULA_B, Buffer.from(`p${i}`)))
  for (const p of pkts) a.tun.inject(p)
  assert.deepEqual(calls, [ULA_B], 'one call, not one per packet')
  assert.equal(a.tunnel.counters().drops.no_sa_queue_full, 2)
  assert.equal(a.tunnel.peers()[0]!.queued, 4)
  clock.advance(1500)
  a.tun.inject(pkts[0]!)
  assert.equal(calls.length, 2, 'retried after noSaRetryMs')
  b.tunnel.installChildSa({
    peerUla: ULA_A,
    spiIn: 0x1111,
    spiOut: 0x2222,
    alg: 'aes128gcm16',
    keyIn: keys.ab,
    keyOut: keys.ba,
    esn: false,
  })
  a.tunnel.installChildSa({
    peerUla: ULA_B,
    spiIn: 0x2222,
    spiOut: 0x1111,
    alg: 'aes128gcm16',
    keyIn: keys.ba,
    keyOut: keys.ab,
    esn: false,
  })
  await settle()
  assert.deepEqual(b.tun.written, [pkts[2], pkts[3], pkts[4], pkts[5]].slice(1).concat([pkts[0]!]))
  assert.equal(a.tunnel.peers()[0]!.queued, 0)
})

test('packets that waited longer than noSaQueueMs are dropped as expired', async (t) => {
  const clock = new FakeClock()
  const { a, b, keys } = await pair(t, { keys: false, clock, tunnelOpts: { noSaQueueMs: 3000 } })
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('old')))
  clock.advance(3001)
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('new')))
  b.tunnel.installChildSa({
    peerUla: ULA_A,
    spiIn: 0x500,
    spiOut: 0x600,
    alg: 'aes128gcm16',
    keyIn: keys.ab,
    keyOut: keys.ba,
    esn: true,
  })
  a.tunnel.installChildSa({
    peerUla: ULA_B,
    spiIn: 0x600,
    spiOut: 0x500,
    alg: 'aes128gcm16',
    keyIn: keys.ba,
    keyOut: keys.ab,
    esn: true,
  })
  await settle()
  assert.equal(a.tunnel.counters().drops.no_sa_queue_expired, 1)
  assert.equal(a.tunnel.counters().txPackets, 1)
})

test('roaming: an authenticated packet from a new address moves the endpoint and traffic continues', async (t) => {
  let movable: MovableSocket | undefined
  const { net, a, b } = await pair(t, {
    wrapB: (s) => {
      movable = new MovableSocket(s)
      return movable
    },
  })
  const changes: unknown[] = []
  a.tunnel.onEndpointChange((ula, ep, prev) => changes.push({ ula, ep, prev }))
  b.tun.inject(ipv6(ULA_B, ULA_A, Buffer.from('before')))
  await settle()
  assert.equal(a.tun.written.length, 1)
  assert.equal(changes.length, 0)
  // B moves to another network: same SAs, new outer address.
  const moved = { address: '192.0.2.77', port: 31000 }
  await movable!.moveTo(net.socket(moved.address), moved.address, moved.port)
  b.tun.inject(ipv6(ULA_B, ULA_A, Buffer.from('after the move')))
  await settle()
  assert.equal(a.tun.written.length, 2)
  assert.deepEqual(changes, [{ ula: ULA_B, ep: moved, prev: ADDR_B }])
  assert.deepEqual(a.tunnel.peers()[0]!.endpoint, moved)
  assert.equal(a.tunnel.counters().roams, 1)
  // A's traffic now goes to the new address.
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('reply')))
  await settle()
  assert.equal(b.tun.written.length, 1)
})

test('replayed ESP from another address (issue 16 finding 10): an old packet moves nothing; a withheld newest packet moves the endpoint only until the next genuine one', async (t) => {
  const { net, a, b } = await pair(t)
  const esp: Buffer[] = []
  // An on-path attacker copies B's datagrams; the second one it also holds back from A.
  net.dropIf = (from, _to, m) => {
    if (from !== `${ADDR_B.address}:${ADDR_B.port}` || m.length < 8) return false
    esp.push(Buffer.from(m))
    return esp.length === 2
  }
  b.tun.inject(ipv6(ULA_B, ULA_A, Buffer.from('one')))
  await settle()
  b.tun.inject(ipv6(ULA_B, ULA_A, Buffer.from('two')))
  await settle()
  b.tun.inject(ipv6(ULA_B, ULA_A, Buffer.from('three')))
  await settle()
  net.dropIf = () => false
  assert.equal(esp.length, 3)
  assert.deepEqual(a.tunnel.peers()[0]!.endpoint, ADDR_B)
  const attacker = { address: '192.0.2.66', port: 4500 }
  const evil = net.socket(attacker.address)
  await evil.bind(attacker.port)
  // Replays of packets A has seen, and the withheld one (older than the newest A has): no roam.
  for (const m of [esp[0]!, esp[2]!, esp[1]!]) evil.send(m, 0, m.length, ADDR_A.port, ADDR_A.address)
  await settle()
  assert.deepEqual(a.tunnel.peers()[0]!.endpoint, ADDR_B, 'only a new highest sequence number roams')
  assert.equal(a.tunnel.counters().roams, 0)
  assert.equal(a.tunnel.counters().drops.replay, 2)
  assert.deepEqual(
    a.tun.written.map((p) => p.subarray(40).toString()),
    ['one', 'three', 'two'],
  )
  // What remains (docs/security.md): a packet the attacker withheld while it is still B's newest moves the endpoint
  // to the attacker, and B's next genuine packet moves it back.
  net.dropIf = (from, _to, m) => {
    if (from !== `${ADDR_B.address}:${ADDR_B.port}` || m.length < 8) return false
    esp.push(Buffer.from(m))
    return true
  }
  b.tun.inject(ipv6(ULA_B, ULA_A, Buffer.from('four')))
  await settle()
  net.dropIf = () => false
  const held = esp.at(-1)!
  evil.send(held, 0, held.length, ADDR_A.port, ADDR_A.address)
  await settle()
  assert.deepEqual(a.tunnel.peers()[0]!.endpoint, attacker)
  b.tun.inject(ipv6(ULA_B, ULA_A, Buffer.from('five')))
  await settle()
  assert.deepEqual(a.tunnel.peers()[0]!.endpoint, ADDR_B, "B's next packet takes its endpoint back")
  assert.equal(a.tunnel.counters().roams, 2)
})

test('make-before-break rekey: two inbound SAs live, outbound switches at once, old SA removed later', async (t) => {
  const { net, a, b } = await pair(t, { alg: 'chacha20poly1305' })
  const held: { m: Buffer; to: string }[] = []
  // Hold A's packets sent with the old SA, to deliver them after the rekey.
  net.dropIf = (_f, to, m) => {
    if (m.readUInt32BE(0) === 0xa0b0) {
      held.push({ m: Buffer.from(m), to })
      return true
    }
    return false
  }
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('old sa')))
  await settle()
  net.dropIf = () => false
  const k1 = randomBytes(36)
  const k2 = randomBytes(36)
  b.tunnel.installChildSa({
    peerUla: ULA_A,
    spiIn: 0xa1b1,
    spiOut: 0xb1a1,
    alg: 'chacha20poly1305',
    keyIn: k1,
    keyOut: k2,
    esn: true,
  })
  a.tunnel.installChildSa({
    peerUla: ULA_B,
    spiIn: 0xb1a1,
    spiOut: 0xa1b1,
    alg: 'chacha20poly1305',
    keyIn: k2,
    keyOut: k1,
    esn: true,
  })
  assert.deepEqual(b.tunnel.peers()[0]!.spisIn, [0xa0b0, 0xa1b1])
  assert.equal(a.tunnel.peers()[0]!.spiOut, 0xa1b1)
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('new sa')))
  await settle()
  const late = net.socket(ADDR_A.address)
  await late.bind(4501)
  for (const h of held) late.send(h.m, 0, h.m.length, ADDR_B.port, ADDR_B.address)
  await settle()
  assert.deepEqual(
    b.tun.written.map((p) => p.subarray(40).toString()),
    ['new sa', 'old sa'],
    'a packet of the old SA still arrives after the switch',
  )
  assert.equal(b.tunnel.removeSa(0xa0b0), true)
  assert.equal(b.tunnel.removeSa(0xa0b0), false)
  for (const h of held) late.send(h.m, 0, h.m.length, ADDR_B.port, ADDR_B.address)
  await settle()
  assert.equal(b.tunnel.counters().drops.unknown_spi, 1)
  await late.close()
})

test('IKE shares the port: non-ESP marker added on send, stripped on receive, handed to onIke with the sender', async (t) => {
  const { a, b } = await pair(t)
  const got: { msg: string; from: string }[] = []
  b.tunnel.onIke((msg, from) => got.push({ msg: msg.toString('hex'), from: `${from.address}:${from.port}` }))
  const ike = Buffer.from('0011223344556677000000000000000021202208000000000000001c', 'hex')
  a.tunnel.sendIke(ike, ADDR_B)
  await settle()
  assert.deepEqual(got, [{ msg: ike.toString('hex'), from: `${ADDR_A.address}:${ADDR_A.port}` }])
  assert.equal(b.tunnel.counters().ikeRx, 1)
  assert.equal(a.tunnel.counters().ikeTx, 1)
  assert.equal(b.tun.written.length, 0)
})

test('NAT keepalives: one 0xFF octet every 20 s to keepalive peers, only when nothing else was sent', async (t) => {
  const clock = new FakeClock()
  const { net, a, b } = await pair(t, { clock })
  const seen: string[] = []
  net.dropIf = (f, to, m) => {
    seen.push(`${f}>${to}:${m.length === 1 ? m.toString('hex') : 'esp'}`)
    return false
  }
  clock.advance(20_000)
  assert.equal(seen.length, 0, 'keepalives are off unless asked for')
  a.tunnel.setKeepalive(ULA_B, true)
  clock.advance(20_000)
  assert.deepEqual(seen, ['198.51.100.1:4500>203.0.113.2:4500:ff'])
  await settle()
  assert.equal(b.tunnel.counters().keepaliveRx, 1)
  assert.equal(b.tun.written.length, 0)
  clock.advance(15_000)
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('data')))
  await settle()
  clock.advance(5_000)
  assert.equal(seen.filter((s) => s.endsWith('ff')).length, 1, 'data 5 s ago: no keepalive due')
  clock.advance(20_000)
  assert.equal(seen.filter((s) => s.endsWith('ff')).length, 2)
  assert.equal(a.tunnel.counters().keepaliveTx, 2)
})

test('NAT keepalives go one interval after the last packet (not at the next fixed tick); no keepalive peer, no timer', async (t) => {
  const clock = new FakeClock()
  const { net, a } = await pair(t, { clock })
  const ka: number[] = []
  net.dropIf = (_f, _to, m) => {
    if (m.length === 1) ka.push(clock.monotonic())
    return false
  }
  const t0 = clock.monotonic()
  a.tunnel.setKeepalive(ULA_B, true)
  clock.advance(15_000)
  a.tun.inject(ipv6(ULA_A, ULA_B, Buffer.from('data')))
  await settle()
  clock.advance(19_999)
  assert.deepEqual(ka, [], 'data 19.999 s ago: not yet')
  clock.advance(1)
  assert.deepEqual(ka, [t0 + 35_000], '20 s after the data, not at a 20 s tick (40 s)')
  clock.advance(20_000)
  assert.deepEqual(ka, [t0 + 35_000, t0 + 55_000])
  a.tunnel.setKeepalive(ULA_B, false)
  clock.advance(100_000)
  assert.equal(ka.length, 2, 'off: none')
})

test('API errors are typed: unknown peer, SPI in use, bad key length, bad ULA, bad endpoint', async (t) => {
  const { a, keys } = await pair(t)
  assert.throws(() => a.tunnel.setPeerEndpoint('fd00::77', ADDR_B), { name: 'TunnelError', code: 'unknown_peer' })
  assert.throws(
    () =>
      a.tunnel.installChildSa({
        peerUla: ULA_B,
        spiIn: 0xb0a0,
        spiOut: 1000,
        alg: 'aes128gcm16',
        keyIn: keys.ba,
        keyOut: keys.ab,
        esn: false,
      }),
    { name: 'TunnelError', code: 'spi_in_use' },
  )
  assert.throws(
    () =>
      a.tunnel.installChildSa({
        peerUla: ULA_B,
        spiIn: 0x9999,
        spiOut: 1000,
        alg: 'aes256gcm16',
        keyIn: keys.ba,
        keyOut: keys.ab,
        esn: false,
      }),
    { name: 'TunnelError', code: 'bad_param' },
  )
  assert.throws(() => a.tunnel.addPeer({ ula: 'not-an-address' }), TypeError)
  assert.throws(() => a.tunnel.setPeerEndpoint(ULA_B, { address: '192.0.2.1', port: 0 }), { code: 'bad_param' })
  const spi = a.tunnel.allocateSpi()
  assert.ok(spi > 0xff && spi !== 0xb0a0)
})
