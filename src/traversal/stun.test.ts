import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import fc from 'fast-check'
import { WireError } from '../dns/wire/errors.js'
import { FakeClock } from '../io/clock.fake.js'
import { SystemClock } from '../io/clock.js'
import { UdpSocket } from '../io/datagram.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { SystemRandom } from '../io/random.js'
import { classifyUdp, UdpKind } from '../tunnel/udp-encap.js'
import {
  decodeStun,
  encodeBindingRequest,
  looksLikeStun,
  parseStunServer,
  probeNat,
  StunAttr,
  StunClient,
  StunType,
} from './stun.js'

failOnLeakedResources()

// RFC 5769 section 2.2, "Sample IPv4 Response" (SOFTWARE "test vector", XOR-MAPPED-ADDRESS 192.0.2.1:32853,
// MESSAGE-INTEGRITY, FINGERPRINT).
const RFC5769_IPV4 = Buffer.from(
  '0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643' +
    '000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96',
  'hex',
)
// RFC 5769 section 2.3, "Sample IPv6 Response" (2001:db8:1234:5678:11:2233:4455:6677 port 32853).
const RFC5769_IPV6 = Buffer.from(
  '010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a1470113a9fa' +
    'a5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed4180280004c8fb0b4c',
  'hex',
)
const TXID = Buffer.from('b7e7a701bc34d686fa87dfae', 'hex')

test('RFC 5769 2.2: IPv4 response decodes to 192.0.2.1:32853 with a matching FINGERPRINT', () => {
  const m = decodeStun(RFC5769_IPV4)
  assert.equal(m.type, StunType.BINDING_SUCCESS)
  assert.deepEqual(m.txid, TXID)
  assert.deepEqual(m.mapped, { address: '192.0.2.1', port: 32853 })
  assert.equal(m.software, 'test vector')
  assert.equal(m.fingerprintOk, true)
  assert.ok(looksLikeStun(RFC5769_IPV4))
})

test('RFC 5769 2.3: IPv6 response decodes to 2001:db8:1234:5678:11:2233:4455:6677 port 32853', () => {
  const m = decodeStun(RFC5769_IPV6)
  assert.deepEqual(m.mapped, { address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 })
  assert.equal(m.fingerprintOk, true)
})

test('a flipped bit breaks the FINGERPRINT', () => {
  const b = Buffer.from(RFC5769_IPV4)
  b[24] = b[24]! ^ 1
  assert.equal(decodeStun(b).fingerprintOk, false)
})

test('MAPPED-ADDRESS fallback and OTHER-ADDRESS (RFC 5780)', () => {
  const attrs = Buffer.from('0001000800010d96c6336407' + '802c00080001 0d97c0000202'.replace(/ /g, ''), 'hex')
  const h = Buffer.alloc(20)
  h.writeUInt16BE(StunType.BINDING_SUCCESS, 0)
  h.writeUInt16BE(attrs.length, 2)
  h.writeUInt32BE(0x2112a442, 4)
  TXID.copy(h, 8)
  const m = decodeStun(Buffer.concat([h, attrs]))
  assert.deepEqual(m.mapped, { address: '198.51.100.7', port: 3478 })
  assert.deepEqual(m.other, { address: '192.0.2.2', port: 3479 })
  assert.equal(m.fingerprintOk, undefined)
})

test('Binding request: header, FINGERPRINT that decodes as valid', () => {
  const r = encodeBindingRequest(TXID, { fingerprint: true })
  assert.equal(r.readUInt16BE(0), StunType.BINDING_REQUEST)
  assert.equal(r.readUInt16BE(2), 8)
  assert.equal(r.readUInt16BE(20), StunAttr.FINGERPRINT)
  const m = decodeStun(r)
  assert.equal(m.fingerprintOk, true)
  assert.deepEqual(m.txid, TXID)
  assert.equal(encodeBindingRequest(TXID).length, 20)
})

test('decodeStun: arbitrary bytes decode or throw WireError, never anything else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (bytes, stunHead) => {
      const b = Buffer.from(bytes)
      if (stunHead && b.length >= 20) {
        b[0] = b[0]! & 0x3f
        b.writeUInt32BE(0x2112a442, 4)
        b.writeUInt16BE(b.length - 20, 2)
      }
      try {
        decodeStun(b)
      } catch (e) {
        assert.ok(e instanceof WireError, String(e))
      }
    }),
    { numRuns: 2000 },
  )
})

test('demux: a STUN-shaped datagram is ESP to the tunnel; the client takes it only for its own transaction', () => {
  const clock = new FakeClock()
  const sent: Buffer[] = []
  const c = new StunClient({ clock, random: new FakeRandom(1), log: new MemoryLogger(), send: (b) => sent.push(b) })
  const from = { address: '192.0.2.1', port: 3478, family: 'IPv4' as const }
  // The RFC response is what ESP classification sees: not a keepalive, not IKE (no zero marker).
  assert.equal(classifyUdp(RFC5769_IPV4), UdpKind.ESP)
  // Nothing outstanding: not taken.
  assert.equal(c.outstanding, 0)
  assert.equal(c.offer(RFC5769_IPV4, from), false)
  const p = c.binding({ address: '192.0.2.1', port: 3478 })
  assert.equal(c.outstanding, 1)
  // Outstanding, but another transaction id (an ESP packet whose SPI/sequence look like a STUN header): not taken.
  assert.equal(c.offer(RFC5769_IPV4, from), false)
  // A reply with our transaction id: taken.
  const reply = Buffer.from(RFC5769_IPV6)
  sent[0]!.copy(reply, 8, 8, 20)
  // The FINGERPRINT no longer matches after the id changed: dropped (taken, counted), transaction still open.
  assert.equal(c.offer(reply, from), true)
  assert.equal(c.counters.malformed, 1)
  assert.equal(c.outstanding, 1)
  const ok = Buffer.from(RFC5769_IPV4.subarray(0, 48))
  ok.writeUInt16BE(28, 2)
  sent[0]!.copy(ok, 8, 8, 20)
  assert.equal(c.offer(ok, from), true)
  assert.equal(c.outstanding, 0)
  assert.equal(clock.pending, 0)
  return p.then((r) => {
    assert.ok(r)
    // XOR with another transaction id: the IPv4 address uses only the cookie, so it is unchanged.
    assert.deepEqual(r.mapped, { address: '192.0.2.1', port: 32853 })
  })
})

test('retransmission: RTO 500 ms doubling, sends at 0, 500, 1500 ms, gives up at 3500 ms', async () => {
  const clock = new FakeClock()
  const at: number[] = []
  const c = new StunClient({
    clock,
    random: new FakeRandom(2),
    log: new MemoryLogger(),
    send: () => at.push(clock.monotonic()),
  })
  let done: unknown = 'pending'
  void c.binding({ address: '192.0.2.1', port: 3478 }).then((r) => (done = r))
  for (let t = 0; t < 4000; t += 50) clock.advance(50)
  await new Promise((r) => setImmediate(r)) // let the give-up's promise chain settle
  assert.deepEqual(at, [0, 500, 1500])
  assert.equal(done, undefined)
  assert.equal(c.counters.timeouts, 1)
  assert.equal(c.counters.retransmits, 2)
  assert.equal(clock.pending, 0)
})

test('close() ends open transactions and timers', async () => {
  const clock = new FakeClock()
  const c = new StunClient({ clock, random: new FakeRandom(3), log: new MemoryLogger(), send: () => {} })
  const p = c.binding({ address: '192.0.2.1', port: 3478 })
  c.close()
  assert.equal(await p, undefined)
  assert.equal(clock.pending, 0)
  assert.equal(await c.binding({ address: '192.0.2.1', port: 3478 }), undefined)
})

test('parseStunServer', () => {
  assert.deepEqual(parseStunServer('192.0.2.1'), { host: '192.0.2.1', port: 3478 })
  assert.deepEqual(parseStunServer('stun.example:3479'), { host: 'stun.example', port: 3479 })
  assert.deepEqual(parseStunServer('[2001:db8::1]:5000'), { host: '2001:db8::1', port: 5000 })
  assert.throws(() => parseStunServer('x:0'), TypeError)
})

const run = promisify(execFile)

test('interop: our client and probeNat against coturn on loopback (two addresses, RFC 5780)', async (t) => {
  const which = await run('sh', ['-c', 'command -v turnserver']).catch(() => undefined)
  if (!which) {
    t.skip('turnserver (coturn) not installed')
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'at-stun-'))
  const port = 20000 + Math.floor(Math.random() * 20000)
  await writeFile(
    join(dir, 'turnserver.conf'),
    `listening-ip=127.0.0.1\nlistening-ip=127.0.0.2\nlistening-port=${port}\nalt-listening-port=${port + 1}\n` +
      `stun-only\nno-tls\nno-dtls\nno-cli\nuserdb=${join(dir, 'turndb')}\nlog-file=stdout\nsimple-log\n` +
      `pidfile=${join(dir, 'turnserver.pid')}\n`,
  )
  const coturn = spawn('turnserver', ['-c', join(dir, 'turnserver.conf')], { stdio: 'ignore' })
  const udp = new UdpSocket()
  const clock = new SystemClock()
  const c = new StunClient(
    {
      clock,
      random: new SystemRandom(),
      log: new MemoryLogger(),
      send: (b, p, a) => udp.send(b, 0, b.length, p, a),
    },
    { rtoMs: 100, giveUpMs: 1500 },
  )
  t.after(async () => {
    c.close()
    coturn.kill('SIGKILL')
    await udp.close()
    await rm(dir, { recursive: true, force: true })
  })
  let taken = 0
  udp.onMessage((m, from) => {
    if (c.outstanding > 0 && c.offer(m, from)) taken++
  })
  const bound = await udp.bind(0, '127.0.0.1')
  const server = { address: '127.0.0.1', port }
  let first: Awaited<ReturnType<StunClient['binding']>>
  for (let i = 0; i < 50 && !first; i++) first = await c.binding(server)
  assert.ok(first, 'coturn answered')
  assert.deepEqual(first.mapped, { address: '127.0.0.1', port: bound.port })
  assert.deepEqual(first.other, { address: '127.0.0.2', port: port + 1 })
  const probe = await probeNat(c, [server])
  assert.ok(probe)
  assert.equal(probe.mapping, 'eim')
  assert.deepEqual(probe.servers[1], { address: '127.0.0.2', port })
  assert.ok(taken >= 3)
  // turnutils_stunclient from the same host sees the same server: same OTHER-ADDRESS, its own reflexive address.
  const ref = await run('timeout', ['3', 'turnutils_stunclient', '-p', String(port), '127.0.0.1']).catch(
    (e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }),
  )
  assert.match(ref.stdout, /Other addr: : 127\.0\.0\.2:/)
  assert.match(ref.stdout, /UDP reflexive addr: 127\.0\.0\.1:\d+/)
})
