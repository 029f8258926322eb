import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import fc from 'fast-check'
import { FakeClock } from '../io/clock.fake.js'
import { type FakeDatagramSocket, FakeNetwork } from '../io/datagram.fake.js'
import type { DatagramHandler, DatagramSocket } from '../io/datagram.js'
import { nullLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { FakeTun } from '../io/tun.fake.js'
import { totalDrops } from './counters.js'
import { ESP_MAX_OVERHEAD, ESP_PAYLOAD_OFFSET, type EspAlg, EspCrypto, IpProto } from './esp.js'
import { POISON_BYTE } from './pool.js'
import { parseIpv6 } from './sa-table.js'
import { Tunnel, type TunnelOptions } from './tunnel.js'

const ULA_A = 'fd00:aaaa::1'
const ULA_B = 'fd00:bbbb::2'
const ADDR_A = { address: '198.51.100.1', port: 4500 }
const ADDR_B = { address: '203.0.113.2', port: 4500 }

const tick = (): Promise<void> => new Promise((r) => setImmediate(r))
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await tick()
}

/** An IPv6 packet (UDP next header, checksum not needed by the tunnel) from `src` to `dst`. */
function ipv6(src: string, dst: string, payload: Buffer): Buffer {
  const p = Buffer.alloc(40 + payload.length)
  p[0] = 0x60
  p.writeUInt16BE(payload.length, 4)
  p[6] = 17
  p[7] = 64
  parseIpv6(src).bytes.copy(p, 8)
  parseIpv6(dst).bytes.copy(p, 24)
  payload.copy(p, 40)
  return p
}

/** Wraps a socket so the test can move it to another address (a host that roams to a new network). */
class MovableSocket implements DatagramSocket {
  #inner: FakeDatagramSocket
  #handler: DatagramHandler = () => {}
  constructor(inner: FakeDatagramSocket) {
    this.#inner = inner
  }
  async moveTo(s: FakeDatagramSocket, address: string, port: number): Promise<void> {
    await this.#inner.close()
    await s.bind(port, address)
    s.onMessage((m, r) => this.#handler(m, r))
    this.#inner = s
  }
  bind(port: number, address?: string): Promise<{ address: string; port: number }> {
    return this.#inner.bind(port, address)
  }
  send(buf: Buffer, off: number, len: number, port: number, addr: string, done?: (err?: Error) => void): void {
    this.#inner.send(buf, off, len, port, addr, done)
  }
  onMessage(h: DatagramHandler): void {
    this.#handler = h
    this.#inner.onMessage(h)
  }
  address(): { address: string; port: number } {
    return this.#inner.address()
  }
  close(): Promise<void> {
    return this.#inner.close()
  }
}

/** Copies the datagram only when the send completes, as the kernel may: a slab reused early would show poison. */
class LateCopySocket implements DatagramSocket {
  constructor(readonly inner: FakeDatagramSocket) {}
  bind(port: number, address?: string): Promise<{ address: string; port: number }> {
    return this.inner.bind(port, address)
  }
  send(buf: Buffer, off: number, len: number, port: number, addr: string, done?: (err?: Error) => void): void {
    setImmediate(() => {
      this.inner.send(buf, off, len, port, addr)
      done?.()
    })
  }
  onMessage(h: DatagramHandler): void {
    this.inner.onMessage(h)
  }
  address(): { address: string; port: number } {
    return this.inner.address()
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}

interface Side {
  tunnel: Tunnel
  tun: FakeTun
  socket: DatagramSocket
}

async function pair(
  t: { after: (fn: () => Promise<void>) => void },
  opts: {
    alg?: EspAlg
    esn?: boolean
    keys?: boolean
    clock?: FakeClock
    tunnelOpts?: Partial<TunnelOptions>
    wrapB?: (s: FakeDatagramSocket) => DatagramSocket
    wrapA?: (s: FakeDatagramSocket) => DatagramSocket
  } = {},
): Promise<{ net: FakeNetwork; a: Side; b: Side; keys: { ab: Buffer; ba: Buffer } }> {
  const net = new FakeNetwork()
  const clock = opts.clock ?? new FakeClock()
  const mk = async (
    ula: string,
    addr: { address: string; port: number },
    wrap?: (s: FakeDatagramSocket) => DatagramSocket,
  ): Promise<Side> => {
    const raw = net.socket(addr.address)
    const socket = wrap ? wrap(raw) : raw
    await socket.bind(addr.port, addr.address)
    const tun = new FakeTun()
    const tunnel = new Tunnel(
      { tun, socket, clock, log: nullLogger, random: new FakeRandom(ula.length) },
      { localUla: ula, poisonSlabs: true, ...opts.tunnelOpts },
    )
    tunnel.start()
    t.after(() => tunnel.close())
    return { tunnel, tun, socket }
  }
  const a = await mk(ULA_A, ADDR_A, opts.wrapA)
  const b = await mk(ULA_B, ADDR_B, opts.wrapB)
  const alg = opts.alg ?? 'aes128gcm16'
  const len = alg === 'aes128gcm16' ? 20 : 36
  const keys = { ab: randomBytes(len), ba: randomBytes(len) }
  a.tunnel.addPeer({ ula: ULA_B, endpoint: ADDR_B })
  b.tunnel.addPeer({ ula: ULA_A, endpoint: ADDR_A })
  if (opts.keys !== false) {
    const esn = opts.esn ?? true
    a.tunnel.installChildSa({
      peerUla: ULA_B,
      spiIn: 0xb0a0,
      spiOut: 0xa0b0,
      alg,
      keyIn: keys.ba,
      keyOut: keys.ab,
      esn,
    })
    b.tunnel.installChildSa({
      peerUla: ULA_A,
      spiIn: 0xa0b0,
      spiOut: 0xb0a0,
      alg,
      keyIn: keys.ab,
      keyOut: keys.ba,
      esn,
    })
  }
  return { net, a, b, keys }
}

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
