import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import fc from 'fast-check'
import { turnConfig } from '../../lab/daemons.js'
import { FakeClock } from '../io/clock.fake.js'
import { SystemClock } from '../io/clock.js'
import { type RemoteInfo, UdpSocket } from '../io/datagram.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { SystemRandom } from '../io/random.js'
import { turnCredentials } from '../server/discovery.js'
import { checkIntegrity, decodeAddress, decodeStun, encodeStun, encodeXorAddress, StunAttr } from './stun.js'
import { TurnClient } from './turn.js'
import {
  CHANNEL_MIN,
  decodeChannelData,
  encodeChannelData,
  longTermKey,
  parseTurnServer,
  StunClass,
  TurnError,
  TurnMethod,
} from './turn-wire.js'

failOnLeakedResources()

// RFC 5769 section 2.4, "Sample Request with Long-Term Authentication": Binding request with USERNAME
// "<U+30DE><U+30C8><U+30EA><U+30C3><U+30AF><U+30B9>", NONCE "f//499k954d6OL34oL9FSTvy64sA", REALM "example.org",
// MESSAGE-INTEGRITY under MD5(username ":" realm ":" password), password "TheMatrIX" after SASLprep.
const RFC5769_LONG_TERM = Buffer.from(
  '000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b900000015001c' +
    '662f2f3439396b39353464364f4c33346f4c394653547679363473410014000b6578616d706c652e6f726700' +
    '00080014f67024656dd64a3e02b8e0712e85c9a28ca89666',
  'hex',
)
const LT_USER = '\u30DE\u30C8\u30EA\u30C3\u30AF\u30B9'
const LT_REALM = 'example.org'
const LT_NONCE = 'f//499k954d6OL34oL9FSTvy64sA'

test('RFC 5769 2.4: the long-term MESSAGE-INTEGRITY checks, and encodeStun rebuilds the vector byte for byte', () => {
  const m = decodeStun(RFC5769_LONG_TERM)
  const key = longTermKey(LT_USER, LT_REALM, 'TheMatrIX')
  assert.equal(checkIntegrity(RFC5769_LONG_TERM, m, key), true)
  assert.equal(checkIntegrity(RFC5769_LONG_TERM, m, longTermKey(LT_USER, LT_REALM, 'TheMatrix')), false)
  const rebuilt = encodeStun(
    0x0001,
    m.txid,
    [
      { type: StunAttr.USERNAME, value: Buffer.from(LT_USER, 'utf8') },
      { type: StunAttr.NONCE, value: Buffer.from(LT_NONCE) },
      { type: StunAttr.REALM, value: Buffer.from(LT_REALM) },
    ],
    { integrityKey: key },
  )
  assert.equal(rebuilt.toString('hex'), RFC5769_LONG_TERM.toString('hex'))
})

test('encodeStun with integrity and fingerprint decodes, checks, and the XOR address round-trips', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 12, maxLength: 12 }),
      fc.ipV4(),
      fc.integer({ min: 1, max: 65535 }),
      fc.uint8Array({ maxLength: 40 }),
      (tx, ip, port, data) => {
        const txid = Buffer.from(tx)
        const key = longTermKey('u', 'r', 'p')
        const b = encodeStun(
          TurnMethod.SEND | StunClass.INDICATION,
          txid,
          [
            { type: StunAttr.XOR_PEER_ADDRESS, value: encodeXorAddress({ address: ip, port }) },
            { type: StunAttr.DATA, value: Buffer.from(data) },
          ],
          { integrityKey: key, fingerprint: true },
        )
        const m = decodeStun(b)
        assert.equal(m.fingerprintOk, true)
        assert.equal(checkIntegrity(b, m, key), true)
        const pa = m.attrs.find((a) => a.type === StunAttr.XOR_PEER_ADDRESS)!
        assert.deepEqual(decodeAddress(pa.value, pa.offset, 'x', b), { address: ip, port })
        assert.deepEqual(m.attrs.find((a) => a.type === StunAttr.DATA)!.value, Buffer.from(data))
      },
    ),
  )
})

test('ChannelData framing (RFC 8656 12.4): 4-octet header, no padding; bad input is undefined', () => {
  const d = Buffer.from('abcde')
  const b = encodeChannelData(0x4001, d)
  assert.equal(b.toString('hex'), `40010005${d.toString('hex')}`)
  assert.deepEqual(decodeChannelData(b), { channel: 0x4001, data: d })
  // Padded (as over TCP) is accepted.
  assert.deepEqual(decodeChannelData(Buffer.concat([b, Buffer.alloc(3)]))?.data, d)
  assert.equal(decodeChannelData(Buffer.from('40010009abcd', 'hex')), undefined)
  assert.equal(decodeChannelData(Buffer.from('3fff0000', 'hex')), undefined)
  assert.equal(decodeChannelData(Buffer.from('5000', 'hex')), undefined)
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (a) => {
      const r = decodeChannelData(Buffer.from(a))
      if (r) assert.ok(r.channel >= CHANNEL_MIN && r.data.length + 4 <= a.length)
    }),
  )
  assert.deepEqual(parseTurnServer('198.51.100.1'), { host: '198.51.100.1', port: 3478 })
  assert.deepEqual(parseTurnServer('198.51.100.1:3479'), { host: '198.51.100.1', port: 3479 })
  assert.throws(() => parseTurnServer('x:0'), TypeError)
})

/** A scripted TURN server on the fake clock: 401 first, then success; records what the client sent. */
function fakeServer(opts: { lifetime: number; staleOnce?: boolean }) {
  const sent: { method: number; lifetime: number | undefined; authed: boolean }[] = []
  const key = longTermKey('alice', 'lab', 'pw')
  let client: TurnClient | undefined
  let stale = opts.staleOnce ?? false
  let nonce = 'n1'
  const deliver: { data: Buffer; from: RemoteInfo }[] = []
  const send = (buf: Buffer): void => {
    const m = decodeStun(buf)
    const method = m.type & 0x3eef
    const lt = m.attrs.find((a) => a.type === StunAttr.LIFETIME)?.value.readUInt32BE(0)
    const authed = checkIntegrity(buf, m, key) === true
    sent.push({ method, lifetime: lt, authed })
    const reply = (type: number, attrs: { type: number; value: Buffer }[], k?: Buffer): void => {
      const r = encodeStun(type, m.txid, attrs, { integrityKey: k, fingerprint: true })
      queueMicrotask(() => client!.offer(r, (data, from) => deliver.push({ data, from })))
    }
    const err = (code: number): { type: number; value: Buffer } => ({
      type: StunAttr.ERROR_CODE,
      value: Buffer.from([0, 0, Math.floor(code / 100), code % 100]),
    })
    if (!authed) {
      reply(method | StunClass.ERROR, [
        err(401),
        { type: StunAttr.REALM, value: Buffer.from('lab') },
        { type: StunAttr.NONCE, value: Buffer.from(nonce) },
      ])
      return
    }
    if (stale && method === TurnMethod.REFRESH) {
      stale = false
      nonce = 'n2'
      reply(method | StunClass.ERROR, [err(438), { type: StunAttr.NONCE, value: Buffer.from(nonce) }])
      return
    }
    const ltv = Buffer.alloc(4)
    ltv.writeUInt32BE(lt ?? opts.lifetime)
    const attrs =
      method === TurnMethod.ALLOCATE
        ? [
            { type: StunAttr.XOR_RELAYED_ADDRESS, value: encodeXorAddress({ address: '203.0.113.1', port: 50000 }) },
            { type: StunAttr.LIFETIME, value: ltv },
          ]
        : method === TurnMethod.REFRESH
          ? [{ type: StunAttr.LIFETIME, value: ltv }]
          : []
    reply(method | StunClass.SUCCESS, attrs, key)
  }
  return {
    sent,
    deliver,
    attach: (c: TurnClient) => {
      client = c
    },
    send,
  }
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r))

test('allocate with 401, permission + channel, refresh timers on the fake clock, 438 retried, close = lifetime 0', async () => {
  const clock = new FakeClock()
  const srv = fakeServer({ lifetime: 600, staleOnce: true })
  const channels: number[] = []
  const c = new TurnClient(
    {
      clock,
      random: new FakeRandom(),
      log: new MemoryLogger(),
      send: (b) => srv.send(b),
      onChannel: (_p, ch) => channels.push(ch),
    },
    { address: '192.0.2.9', port: 3478, username: 'alice', password: 'pw' },
  )
  srv.attach(c)
  const relayed = await c.allocate()
  assert.deepEqual(relayed, { address: '203.0.113.1', port: 50000 })
  assert.deepEqual(
    srv.sent.map((s) => [s.method, s.authed]),
    [
      [TurnMethod.ALLOCATE, false],
      [TurnMethod.ALLOCATE, true],
    ],
  )
  const peer = { address: '198.51.100.7', port: 4500 }
  assert.equal(c.wrap(Buffer.from('x'), 0, 1, 4500, '198.51.100.7'), undefined, 'unknown peer: not wrapped')
  const p = c.addPeer(peer)
  // While the channel is being bound, sends go out as Send indications.
  const ind = c.wrap(Buffer.from('hello'), 0, 5, 4500, '198.51.100.7')!
  assert.equal(decodeStun(ind).type, TurnMethod.SEND | StunClass.INDICATION)
  assert.equal(await p, CHANNEL_MIN)
  assert.deepEqual(channels, [CHANNEL_MIN])
  assert.equal(c.channelOf('198.51.100.7', 4500), CHANNEL_MIN)
  assert.equal(c.wrap(Buffer.from('hello'), 0, 5, 4500, '198.51.100.7')!.toString('hex'), '4000000568656c6c6f')
  // Inbound ChannelData and Data indications come out as the peer's datagrams.
  c.offer(encodeChannelData(CHANNEL_MIN, Buffer.from('esp')), (data, from) => srv.deliver.push({ data, from }))
  const di = encodeStun(TurnMethod.DATA | StunClass.INDICATION, Buffer.alloc(12, 7), [
    { type: StunAttr.XOR_PEER_ADDRESS, value: encodeXorAddress({ address: '198.51.100.8', port: 999 }) },
    { type: StunAttr.DATA, value: Buffer.from('ike') },
  ])
  c.offer(di, (data, from) => srv.deliver.push({ data, from }))
  c.offer(encodeChannelData(0x4abc, Buffer.from('?')), () => assert.fail('unknown channel delivered'))
  assert.deepEqual(
    srv.deliver.map((d) => [d.data.toString(), d.from.address, d.from.port]),
    [
      ['esp', '198.51.100.7', 4500],
      ['ike', '198.51.100.8', 999],
    ],
  )
  assert.equal(c.counters.unknownChannel, 1)
  const count = (m: number): number => srv.sent.filter((s) => s.method === m).length
  assert.equal(count(TurnMethod.CREATE_PERMISSION), 1)
  assert.equal(count(TurnMethod.CHANNEL_BIND), 1)
  // 4 min: permissions again; 9 min: channels again, 540 s (600 - 60): Refresh (438 once, then accepted).
  clock.advance(4 * 60_000)
  await flush()
  assert.equal(count(TurnMethod.CREATE_PERMISSION), 2)
  clock.advance(4 * 60_000)
  await flush()
  assert.equal(count(TurnMethod.CREATE_PERMISSION), 3)
  assert.equal(count(TurnMethod.REFRESH), 0)
  clock.advance(60_000)
  await flush()
  await flush()
  assert.equal(count(TurnMethod.REFRESH), 2, 'stale nonce answered with 438, retried once')
  assert.equal(count(TurnMethod.CHANNEL_BIND), 2)
  assert.equal(c.state, 'allocated')
  await c.close()
  const last = srv.sent.at(-1)!
  assert.deepEqual([last.method, last.lifetime], [TurnMethod.REFRESH, 0])
  assert.equal(c.state, 'closed')
  assert.equal(clock.pending, 0)
})

test('no answer: allocate rejects with a TurnError after giveUpMs (retransmitted)', async () => {
  const clock = new FakeClock()
  let sends = 0
  const c = new TurnClient(
    { clock, random: new FakeRandom(), log: new MemoryLogger(), send: () => sends++ },
    { address: '192.0.2.9', port: 3478, username: 'a', password: 'b' },
    { rtoMs: 100, giveUpMs: 1000 },
  )
  const p = c.allocate()
  clock.advance(1000)
  await assert.rejects(p, (e: unknown) => e instanceof TurnError && e.code === 0)
  assert.equal(sends, 4)
  assert.equal(c.state, 'failed')
  await c.close()
})

const run = promisify(execFile)

test('interop: allocate, permission, channel, data both ways with a real coturn; wrong password is a clear 401', async (t) => {
  const which = await run('sh', ['-c', 'command -v turnserver']).catch(() => undefined)
  if (!which) {
    t.skip('turnserver (coturn) not installed')
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'at-turn-'))
  const port = 20000 + Math.floor(Math.random() * 20000)
  await writeFile(
    join(dir, 'turnserver.conf'),
    turnConfig(dir, {
      listen: '127.0.0.1',
      port,
      user: 'alice',
      password: 's3cret',
      realm: 'lab.example',
      allowLoopback: true,
    }) + `min-port=${port + 10}\nmax-port=${port + 200}\n`,
  )
  const coturn = spawn('turnserver', ['-c', join(dir, 'turnserver.conf')], { stdio: 'ignore' })
  const udp = new UdpSocket()
  const peerSock = new UdpSocket()
  // A second peer on another loopback address that never gets a permission: its datagrams must be dropped whenever
  // they arrive. (Sending from the permitted peer before CreatePermission raced coturn: its relay thread could read
  // the datagram after the listener thread had installed the permission, and relay it.)
  const strangerSock = new UdpSocket()
  const mk = (password: string): TurnClient =>
    new TurnClient(
      {
        clock: new SystemClock(),
        random: new SystemRandom(),
        log: new MemoryLogger(),
        send: (b, p, a) => udp.send(b, 0, b.length, p, a),
      },
      { address: '127.0.0.1', port, username: 'alice', password },
      { rtoMs: 100, giveUpMs: 1500 },
    )
  let c = mk('wrong')
  t.after(async () => {
    await c.close()
    coturn.kill('SIGKILL')
    await udp.close()
    await peerSock.close()
    await strangerSock.close()
    await rm(dir, { recursive: true, force: true })
  })
  const got: { data: string; from: RemoteInfo }[] = []
  udp.onMessage((m, from) => {
    if (from.port === port && from.address === '127.0.0.1')
      c.offer(m, (data, f) => got.push({ data: data.toString(), from: f }))
  })
  const atPeer: { data: string; from: RemoteInfo }[] = []
  peerSock.onMessage((m, from) => atPeer.push({ data: m.toString(), from }))
  await udp.bind(0, '127.0.0.1')
  const peer = await peerSock.bind(0, '127.0.0.1')
  await strangerSock.bind(0, '127.0.0.2')
  // coturn takes a moment to listen: retry the first Allocate until it answers at all.
  let err: unknown
  for (let i = 0; i < 50; i++) {
    err = await c.allocate().then(
      () => undefined,
      (e: unknown) => e,
    )
    if (err instanceof TurnError && err.code !== 0) break
    await c.close()
    c = mk('wrong')
  }
  assert.ok(err instanceof TurnError, String(err))
  assert.equal(err.code, 401)
  assert.match(err.message, /401 Unauthorized.*alice.*wrong password/)
  await c.close()
  c = mk('s3cret')
  const relayed = await c.allocate()
  assert.equal(relayed.address, '127.0.0.1')
  assert.ok(relayed.port >= port + 10 && relayed.port <= port + 200, `relayed port ${relayed.port}`)
  const peerEp = { address: '127.0.0.1', port: peer.port }
  // A peer without a permission is dropped by coturn, before and after another peer got one.
  await strangerSock.send(Buffer.from('early'), 0, 5, relayed.port, relayed.address)
  const ch = await c.addPeer(peerEp)
  assert.ok(ch >= 0x4000 && ch <= 0x4fff)
  const w = c.wrap(Buffer.from('to-peer'), 0, 7, peer.port, '127.0.0.1')!
  await udp.send(w, 0, w.length, port, '127.0.0.1')
  await strangerSock.send(Buffer.from('stranger'), 0, 8, relayed.port, relayed.address)
  await peerSock.send(Buffer.from('to-client'), 0, 9, relayed.port, relayed.address)
  for (let i = 0; i < 100 && (atPeer.length === 0 || got.length === 0); i++) await new Promise((r) => setTimeout(r, 20))
  assert.deepEqual(
    atPeer.map((x) => [x.data, x.from.port]),
    [['to-peer', relayed.port]],
  )
  assert.deepEqual(
    got.map((x) => [x.data, x.from.address, x.from.port]),
    [['to-client', '127.0.0.1', peer.port]],
  )
  assert.equal(c.counters.channelDataRx, 1, 'coturn sent ChannelData on the bound channel')
  const st = c.status() as { permissions: string[]; channels: unknown[]; lifetimeLeftSec: number }
  assert.deepEqual(st.permissions, ['127.0.0.1'])
  assert.ok(st.lifetimeLeftSec > 500)
})

test("interop: coturn in the REST scheme accepts the autotunnel server's ephemeral credentials, refuses expired ones", async (t) => {
  const which = await run('sh', ['-c', 'command -v turnserver']).catch(() => undefined)
  if (!which) {
    t.skip('turnserver (coturn) not installed')
    return
  }
  const dir = await mkdtemp(join(tmpdir(), 'at-turn-rest-'))
  const port = 20000 + Math.floor(Math.random() * 20000)
  const secret = 'rest-secret'
  await writeFile(
    join(dir, 'turnserver.conf'),
    turnConfig(dir, { listen: '127.0.0.1', port, user: '-', password: '-', realm: 'lab.example', secret }),
  )
  const coturn = spawn('turnserver', ['-c', join(dir, 'turnserver.conf')], { stdio: 'ignore' })
  const udp = new UdpSocket()
  const clients: TurnClient[] = []
  // A second socket for the expired credentials (one allocation per 5-tuple: the same one would get 437).
  const udp2 = new UdpSocket()
  const mk = (nowMs: number, sock = udp): TurnClient => {
    const cred = turnCredentials(Buffer.from(secret), 3600, 'alice', nowMs)
    const c = new TurnClient(
      {
        clock: new SystemClock(),
        random: new SystemRandom(),
        log: new MemoryLogger(),
        send: (b, p, a) => sock.send(b, 0, b.length, p, a),
      },
      { address: '127.0.0.1', port, ...cred },
      { rtoMs: 100, giveUpMs: 1500 },
    )
    clients.push(c)
    return c
  }
  t.after(async () => {
    for (const c of clients) await c.close()
    coturn.kill('SIGKILL')
    await udp.close()
    await udp2.close()
    await rm(dir, { recursive: true, force: true })
  })
  for (const sock of [udp, udp2]) {
    sock.onMessage((m, from) => {
      if (from.port === port) for (const c of clients) c.offer(m, () => {})
    })
    await sock.bind(0, '127.0.0.1')
  }
  let relayed: Awaited<ReturnType<TurnClient['allocate']>> | undefined
  for (let i = 0; i < 50 && !relayed; i++)
    relayed = await mk(Date.now())
      .allocate()
      .catch(() => undefined)
  assert.equal(relayed?.address, '127.0.0.1')
  const expired = mk(Date.now() - 7200_000, udp2)
  await assert.rejects(expired.allocate(), (e: unknown) => e instanceof TurnError && e.code === 401)
})

test('property: whatever the TURN server address sends, offer never throws and delivers only from known channels', async () => {
  const clock = new FakeClock()
  const srv = fakeServer({ lifetime: 600 })
  const c = new TurnClient(
    { clock, random: new FakeRandom(), log: new MemoryLogger(), send: (b) => srv.send(b) },
    { address: '192.0.2.9', port: 3478, username: 'alice', password: 'pw' },
  )
  srv.attach(c)
  await c.allocate()
  await c.addPeer({ address: '198.51.100.7', port: 4500 })
  const stunLike = fc
    .tuple(fc.integer({ min: 0, max: 0x3fff }), fc.uint8Array({ maxLength: 60 }))
    .map(([type, rest]) => {
      const b = Buffer.alloc(20 + rest.length)
      b.writeUInt16BE(type, 0)
      b.writeUInt16BE(rest.length, 2)
      b.writeUInt32BE(0x2112a442, 4)
      Buffer.from(rest).copy(b, 20)
      return b
    })
  const channelLike = fc
    .tuple(
      fc.integer({ min: 0x4000, max: 0x4fff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.uint8Array({ maxLength: 40 }),
    )
    .map(([ch, len, rest]) => {
      const b = Buffer.alloc(4 + rest.length)
      b.writeUInt16BE(ch, 0)
      b.writeUInt16BE(len, 2)
      Buffer.from(rest).copy(b, 4)
      return b
    })
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
        stunLike,
        channelLike,
      ),
      (m) => {
        c.offer(m, (_d, from) => {
          assert.ok(
            from.address === '198.51.100.7' || m.readUInt16BE(0) === (TurnMethod.DATA | StunClass.INDICATION),
            'only a known channel or a Data indication',
          )
        })
      },
    ),
    { numRuns: 3000 },
  )
  await c.close()
})
