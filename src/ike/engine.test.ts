import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { SystemRandom } from '../io/random.js'
import { derivePsk } from './auth.js'
import { DhGroup, ExchangeType, HeaderFlag, NotifyType } from './constants.js'
import { IkeEngine, type IkeEngineOpts } from './engine.js'
import { CHILD_REKEY_RETRY_MS } from './exchange-child.js'
import { generateHostKey, type HostKey } from './hostkey.js'
import { DEFAULT_IKE_POLICY } from './proposals.js'
import { DualUdpIkeTransport, UdpIkeTransport } from './transport.js'
import type { ChildSaKeys, IkeEvents, PeerInfo } from './types.js'
import { notify } from './util.js'

failOnLeakedResources()

const A = { id: 'a.alice.example', ula: 'fd00:a::1', addr: '192.0.2.10' }
const B = { id: 'b.alice.example', ula: 'fd00:b::1', addr: '198.51.100.20' }
const PORT = 4500

interface Side {
  engine: IkeEngine
  up: ChildSaKeys[]
  down: { spiIn: number; reason: string }[]
  key: HostKey
}

async function pair(
  t: { after: (fn: () => unknown) => void },
  o: {
    auth?: 'psk' | 'signature'
    alg?: 'ed25519' | 'ecdsa-p256'
    a?: Partial<IkeEngineOpts>
    b?: Partial<IkeEngineOpts>
    net?: FakeNetwork
  } = {},
): Promise<{ a: Side; b: Side; net: FakeNetwork; clock: FakeClock; peers: Map<string, PeerInfo> }> {
  const net = o.net ?? new FakeNetwork()
  const clock = new FakeClock()
  const psk = derivePsk('account secret', 'alice')
  const keyA = generateHostKey(o.alg)
  const keyB = generateHostKey(o.alg)
  const peers = new Map<string, PeerInfo>([
    [A.id, { id: A.id, ula: A.ula, publicKeys: [keyA.publicKey], endpoint: { address: A.addr, port: PORT } }],
    [B.id, { id: B.id, ula: B.ula, publicKeys: [keyB.publicKey], endpoint: { address: B.addr, port: PORT } }],
  ])
  const mk = async (me: typeof A, key: HostKey, extra: Partial<IkeEngineOpts> | undefined): Promise<Side> => {
    const sock = net.socket(me.addr)
    await sock.bind(PORT)
    t.after(() => sock.close())
    const side: Side = { up: [], down: [], key } as unknown as Side
    const events: IkeEvents = {
      childUp: (k) => side.up.push(k),
      childDown: (d) => side.down.push(d),
    }
    side.engine = new IkeEngine(
      { transport: new UdpIkeTransport(sock), clock, random: new SystemRandom(), log: nullLogger },
      {
        localId: me.id,
        localUla: me.ula,
        auth: o.auth ?? 'signature',
        hostKey: key,
        psk,
        lookupPeer: async (id) => peers.get(id),
        ...extra,
      },
      events,
    )
    t.after(() => side.engine.close())
    return side
  }
  const a = await mk(A, keyA, o.a)
  const b = await mk(B, keyB, o.b)
  return { a, b, net, clock, peers }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
}

function assertMirror(x: ChildSaKeys, y: ChildSaKeys): void {
  assert.equal(x.spiIn, y.spiOut)
  assert.equal(x.spiOut, y.spiIn)
  assert.deepEqual(x.keyIn, y.keyOut)
  assert.deepEqual(x.keyOut, y.keyIn)
  assert.equal(x.alg, y.alg)
  assert.equal(x.esn, y.esn)
}

for (const auth of ['psk', 'signature'] as const) {
  for (const group of [DhGroup.CURVE25519, DhGroup.ECP_256, DhGroup.ECP_384]) {
    test(`handshake ${auth} group ${group}: both sides get mirrored Child SA keys`, async (t) => {
      const pol = { ...DEFAULT_IKE_POLICY, groups: [group] }
      const { a, b } = await pair(t, { auth, a: { ikePolicy: pol }, b: { ikePolicy: pol } })
      const k = await a.engine.connect(B.id)
      await settle()
      assert.equal(b.up.length, 1)
      assertMirror(k, b.up[0]!)
      assert.equal(k.peerUla, B.ula)
      assert.equal(b.up[0]!.peerUla, A.ula)
      assert.equal(a.engine.list()[0]?.suite.endsWith(`g${group}`), true)
    })
  }
}

test('ECDSA P-256 signatures (RFC 7427)', async (t) => {
  const { a, b } = await pair(t, { alg: 'ecdsa-p256' })
  const k = await a.engine.connect(B.id)
  await settle()
  assertMirror(k, b.up[0]!)
})

test('retransmission: a lost IKE_AUTH response is resent from the responder cache; message IDs stay in window', async (t) => {
  const net = new FakeNetwork()
  let dropped = 0
  net.dropIf = (from, _to, msg) => {
    // drop the first IKE_AUTH response (exchange type 35, response flag) from B
    if (from.startsWith(B.addr) && msg.length > 22 && msg[4 + 18] === 35 && dropped === 0) {
      dropped++
      return true
    }
    return false
  }
  const { a, b, clock } = await pair(t, { net })
  const p = a.engine.connect(B.id)
  await settle()
  assert.equal(dropped, 1)
  clock.advance(1000)
  await settle()
  const k = await p
  assertMirror(k, b.up[0]!)
  assert.equal(b.engine.stats.txRetransmitsAnswered, 1)
  assert.equal(b.up.length, 1, 'the retransmitted request did not create a second Child SA')
})

test('retransmissions exhausted: connect fails with IkeTimeoutError and nothing is left behind', async (t) => {
  const net = new FakeNetwork()
  net.dropIf = () => true
  const { a, clock } = await pair(t, { net, a: { retransmit: { initialMs: 100, factor: 2, tries: 3 } } })
  const p = a.engine.connect(B.id)
  const rejected = assert.rejects(p, { name: 'IkeTimeoutError' })
  for (let i = 0; i < 10; i++) {
    clock.advance(1000)
    await settle()
  }
  await rejected
  assert.equal(net.sent, 4)
  assert.equal(a.engine.sas.size, 0)
})

test('COOKIE: a flood of IKE_SA_INIT from spoofed sources triggers cookies; a real peer still gets in', async (t) => {
  const { a, b, net } = await pair(t, { b: { cookieThreshold: 8 } })
  // capture one genuine IKE_SA_INIT request from A
  let init: Buffer | undefined
  net.dropIf = (_f, _t, msg) => {
    if (!init && msg[4 + 18] === 34) init = Buffer.from(msg.subarray(4))
    return false
  }
  await a.engine.connect(B.id)
  assert.ok(init)
  for (let i = 0; i < 200; i++) {
    const spoof = Buffer.from(init)
    spoof.writeUInt32BE(i + 1, 0)
    b.engine.receive(spoof, { address: `203.0.113.${i % 250}`, port: 1000 + i })
  }
  assert.equal(b.engine.countHalfOpen(), 8)
  assert.equal(b.engine.stats.cookiesSent, 200 - 8)
  await a.engine.disconnect(B.id)
  await settle()
  const k = await a.engine.connect(B.id)
  assert.ok(k.spiIn)
  assert.ok(b.engine.stats.cookiesSent > 192, 'the real peer had to present a cookie too')
})

test('INVALID_KE_PAYLOAD: initiator retries with the group the responder asks for', async (t) => {
  const { a, b } = await pair(t, {
    a: { ikePolicy: { ...DEFAULT_IKE_POLICY, groups: [DhGroup.CURVE25519, DhGroup.ECP_384] } },
    b: { ikePolicy: { ...DEFAULT_IKE_POLICY, groups: [DhGroup.ECP_384] } },
  })
  await a.engine.connect(B.id)
  assert.equal(b.engine.stats.invalidKeSent, 1)
  assert.match(a.engine.list()[0]!.suite, /g20$/)
})

test('authentication: unknown peer, wrong key and wrong PSK are refused with AUTHENTICATION_FAILED', async (t) => {
  const { a, b, peers } = await pair(t)
  const saved = peers.get(A.id)!
  peers.set(A.id, { ...saved, publicKeys: [generateHostKey().publicKey] })
  await assert.rejects(a.engine.connect(B.id), { name: 'IkePeerError', code: 24 })
  peers.delete(A.id)
  await assert.rejects(a.engine.connect(B.id), { name: 'IkePeerError', code: 24 })
  assert.equal(b.engine.stats.authFailures, 2)
  assert.equal(b.up.length, 0)
  const pk = await pair(t, { auth: 'psk', b: { psk: derivePsk('other secret', 'alice') }, net: new FakeNetwork() })
  await assert.rejects(pk.a.engine.connect(B.id), { code: 24 })
})

test('revocation: when a peer key disappears from DNS both its SAs go within one revalidation period', async (t) => {
  const { a, b, peers, clock } = await pair(t, { a: { revalidateMs: 30_000 }, b: { revalidateMs: 30_000 } })
  await a.engine.connect(B.id)
  await settle()
  assert.equal(b.up.length, 1)
  peers.set(A.id, { ...peers.get(A.id)!, publicKeys: [] })
  clock.advance(30_000)
  await settle()
  clock.advance(2_000)
  await settle()
  assert.equal(b.engine.stats.revoked, 1)
  assert.equal(b.engine.list().length, 0)
  assert.equal(a.engine.list().length, 0, 'the revoked host was told with a Delete')
  assert.deepEqual(
    b.down.map((d) => d.reason),
    ['revoked'],
  )
  await assert.rejects(a.engine.connect(B.id), { code: 24 })
})

test('Child SA rekey with PFS by each side: make-before-break, old SA deleted on both', async (t) => {
  const { a, b } = await pair(t)
  const k1 = await a.engine.connect(B.id)
  await settle()
  const k2 = await a.engine.rekeyChild(B.id)
  await settle()
  assert.equal(k2.replaces, k1.spiIn)
  assert.notDeepEqual(k2.keyOut, k1.keyOut)
  assertMirror(k2, b.up[1]!)
  assert.equal(b.up[1]!.replaces, b.up[0]!.spiIn)
  assert.deepEqual(
    a.down.map((d) => d.spiIn),
    [k1.spiIn],
  )
  assert.deepEqual(
    b.down.map((d) => d.spiIn),
    [b.up[0]!.spiIn],
  )
  const k3 = await b.engine.rekeyChild(A.id)
  await settle()
  assertMirror(k3, a.up[2]!)
  assert.equal(a.engine.list()[0]!.children.length, 1)
  assert.equal(b.engine.list()[0]!.children.length, 1)
})

test('IKE SA rekey by each side keeps the Child SA; DPD works on the new SA', async (t) => {
  const { a, b } = await pair(t)
  const k = await a.engine.connect(B.id)
  const spi1 = a.engine.list()[0]!.spiI
  await a.engine.rekeyIke(B.id)
  await settle()
  assert.equal(a.engine.list().length, 1)
  assert.equal(b.engine.list().length, 1)
  assert.notEqual(a.engine.list()[0]!.spiI, spi1)
  assert.equal(a.engine.list()[0]!.spiI, b.engine.list()[0]!.spiI)
  assert.deepEqual(
    a.engine.list()[0]!.children.map((c) => c.spiIn),
    [k.spiIn],
  )
  await b.engine.rekeyIke(A.id)
  await settle()
  assert.equal(a.engine.list().length, 1)
  assert.equal(a.engine.list()[0]!.initiator, false)
  assert.equal(await a.engine.dpd(B.id), true)
  assert.equal(await b.engine.dpd(A.id), true)
  assert.equal(a.down.length + b.down.length, 0)
  const k2 = await a.engine.rekeyChild(B.id)
  await settle()
  assertMirror(k2, b.up.at(-1)!)
})

test('DPD: a silent peer is declared dead and its SAs removed', async (t) => {
  const { a, net, clock } = await pair(t, { a: { retransmit: { initialMs: 500, factor: 2, tries: 2 } } })
  await a.engine.connect(B.id)
  net.dropIf = () => true
  const p = a.engine.dpd(B.id)
  for (let i = 0; i < 10; i++) {
    clock.advance(1000)
    await settle()
  }
  assert.equal(await p, false)
  assert.equal(a.engine.list().length, 0)
  assert.equal(a.down[0]?.reason, 'dpd timeout')
})

test('replayed and out-of-window requests are dropped and counted, never answered twice with new state', async (t) => {
  const { a, b, net } = await pair(t)
  const seen: Buffer[] = []
  net.dropIf = (from, _to, msg) => {
    if (from.startsWith(A.addr)) seen.push(Buffer.from(msg.subarray(4)))
    return false
  }
  await a.engine.connect(B.id)
  await a.engine.dpd(B.id)
  await settle()
  const before = { ...b.engine.stats }
  const from = { address: A.addr, port: PORT }
  b.engine.receive(seen[1]!, from) // IKE_AUTH (id 1): older than the last response → dropped
  b.engine.receive(seen[2]!, from) // INFORMATIONAL (id 2): the last one → cached response resent
  const future = Buffer.from(seen[2]!)
  future.writeUInt32BE(7, 20)
  b.engine.receive(future, from)
  assert.equal(b.engine.stats.rxOutOfWindow - before.rxOutOfWindow, 2)
  assert.equal(b.engine.stats.txRetransmitsAnswered - before.txRetransmitsAnswered, 1)
  assert.equal(b.up.length, 1)
})

test('MOBIKE: the initiator moves, sends UPDATE_SA_ADDRESSES, the responder checks return routability', async (t) => {
  const net = new FakeNetwork()
  const { a, b } = await pair(t, { net })
  await a.engine.connect(B.id)
  assert.equal(a.engine.list()[0]!.mobike, true)
  const moved: { peerId: string; remote: { address: string } }[] = []
  ;(b.engine.events as IkeEvents).peerEndpoint = (e) => moved.push(e)
  // A's transport now sends from a new address
  const newSock = net.socket('203.0.113.77')
  await newSock.bind(PORT)
  t.after(() => newSock.close())
  const tr = a.engine.deps.transport as UdpIkeTransport
  const moveTo = new UdpIkeTransport(newSock)
  moveTo.onMessage((buf, from) => a.engine.receive(buf, from))
  Object.assign(a.engine.deps, { transport: moveTo })
  await a.engine.updateAddresses()
  await settle()
  assert.equal(a.engine.stats.mobikeUpdates, 1)
  assert.deepEqual(
    moved.map((m) => [m.peerId, m.remote.address]),
    [[A.id, '203.0.113.77']],
  )
  assert.equal(b.engine.list()[0]!.remote.address, '203.0.113.77')
  assert.equal(await b.engine.dpd(A.id), true)
  assert.ok(tr)
})

test('concurrent connect() calls share one attempt; close() leaves no timers', async (t) => {
  const { a, b, clock } = await pair(t)
  const [x, y] = await Promise.all([a.engine.connect(B.id), a.engine.connect(B.id)])
  assert.equal(x.spiIn, y.spiIn)
  assert.equal(a.engine.stats.ikeEstablished, 1)
  await a.engine.close()
  await b.engine.close()
  assert.equal(clock.pending, 0)
})

test('MOBIKE: the responder moves, sends its address list, the initiator follows with UPDATE_SA_ADDRESSES', async (t) => {
  const net = new FakeNetwork()
  const { a, b } = await pair(t, { net })
  await a.engine.connect(B.id)
  const moved: { peerId: string; remote: { address: string } }[] = []
  ;(a.engine.events as IkeEvents).peerEndpoint = (e) => moved.push(e)
  const newSock = net.socket('203.0.113.88')
  await newSock.bind(PORT)
  t.after(() => newSock.close())
  const moveTo = new UdpIkeTransport(newSock)
  moveTo.onMessage((buf, from) => b.engine.receive(buf, from))
  Object.assign(b.engine.deps, { transport: moveTo })
  await b.engine.updateAddresses()
  await settle()
  assert.deepEqual(
    moved.map((m) => [m.peerId, m.remote.address]),
    [[B.id, '203.0.113.88']],
  )
  assert.equal(a.engine.stats.mobikeUpdates, 1)
  assert.equal(a.engine.list()[0]!.remote.address, '203.0.113.88')
  assert.equal(await a.engine.dpd(B.id), true)
})

test('simultaneous Child SA rekey (RFC 7296 2.8.1): the redundant SA with the lowest nonce goes, one pair remains', async (t) => {
  const { a, b } = await pair(t)
  await a.engine.connect(B.id)
  await settle()
  for (let round = 0; round < 6; round++) {
    const [ka, kb] = await Promise.all([a.engine.rekeyChild(B.id), b.engine.rekeyChild(A.id)])
    await settle()
    assert.ok(ka.spiIn && kb.spiIn)
    const ca = a.engine.list()[0]!.children
    const cb = b.engine.list()[0]!.children
    assert.equal(ca.length, 1, `round ${round}: A has ${JSON.stringify(ca)}`)
    assert.equal(cb.length, 1, `round ${round}: B has ${JSON.stringify(cb)}`)
    assert.equal(ca[0]!.spiIn, cb[0]!.spiOut)
    assert.equal(ca[0]!.spiOut, cb[0]!.spiIn)
  }
})

/** Offsets in an IKE message on port 4500: the 4-byte non-ESP marker, then the RFC 7296 3.1 header. */
const MARKED = 4
const HDR_EXCHANGE_TYPE = MARKED + 18
const HDR_FLAGS = MARKED + 19
const HDR_MESSAGE_ID = MARKED + 20

/** A promise and how it ended so far ('resolved', 'rejected: ...', or undefined while it is pending). */
function tracked<T>(p: Promise<T>): { promise: Promise<T>; ended: string | undefined } {
  const t: { promise: Promise<T>; ended: string | undefined } = { promise: p, ended: undefined }
  t.promise = p.then(
    (v) => {
      t.ended = 'resolved'
      return v
    },
    (err: unknown) => {
      t.ended = `rejected: ${String(err)}`
      throw err
    },
  )
  return t
}

test('TEMPORARY_FAILURE to a Child SA rekey (RFC 7296 2.25): the initiator waits, retries, and gets its new SA', async (t) => {
  const net = new FakeNetwork()
  const { a, b, clock } = await pair(t, { net })
  const k1 = await a.engine.connect(B.id)
  await settle()
  const requestsAtMs: number[] = []
  net.dropIf = (from, _to, msg) => {
    const isRequest =
      msg[HDR_EXCHANGE_TYPE] === ExchangeType.CREATE_CHILD_SA && !(msg[HDR_FLAGS]! & HeaderFlag.RESPONSE)
    if (!from.startsWith(A.addr) || !isRequest) return false
    requestsAtMs.push(clock.monotonic())
    if (requestsAtMs.length > 1) return false
    // B is busy with another exchange on this SA (as charon is while it deletes the SA after its own rekey): B's
    // IKE SA answers this request with TEMPORARY_FAILURE instead of handing it to the engine.
    const bSa = [...b.engine.sas.values()][0]!
    const id = msg.readUInt32BE(HDR_MESSAGE_ID)
    bSa.respond(ExchangeType.CREATE_CHILD_SA, id, [notify(NotifyType.TEMPORARY_FAILURE)], {
      address: A.addr,
      port: PORT,
    })
    return true
  }
  const rekey = tracked(a.engine.rekeyChild(B.id))
  await settle()
  assert.equal(requestsAtMs.length, 1)
  assert.equal(rekey.ended, undefined, 'the rekey ended on TEMPORARY_FAILURE instead of waiting to retry')
  // "MUST NOT immediately retry ... MUST wait": nothing before the first retry delay.
  clock.advance(CHILD_REKEY_RETRY_MS - 1)
  await settle()
  assert.equal(requestsAtMs.length, 1, 'retried without waiting')
  clock.advance(CHILD_REKEY_RETRY_MS / 2 + 1)
  await settle()
  assert.equal(requestsAtMs.length, 2, 'no retry after the delay (plus jitter)')
  const k2 = await rekey.promise
  await settle()
  assert.equal(k2.replaces, k1.spiIn)
  assertMirror(k2, b.up[1]!)
  assert.deepEqual(
    a.down.map((d) => d.spiIn),
    [k1.spiIn],
  )
  assert.equal(a.engine.list()[0]!.children.length, 1)
  assert.equal(b.engine.list()[0]!.children.length, 1)
})

test("CHILD_SA_NOT_FOUND for the SA the peer's own rekey just made: the initiator waits for that rekey, then retries", async (t) => {
  const net = new FakeNetwork()
  const { a, b, clock } = await pair(t, { net })
  const k1 = await a.engine.connect(B.id)
  await settle()
  // B rekeys; A answers, but B gets that answer only later (B's threads took A's next request first, as charon's
  // may), so B does not know the new SA yet when A asks to rekey it.
  let held: Buffer | undefined
  net.dropIf = (from, _to, msg) => {
    const isResponse =
      msg[HDR_EXCHANGE_TYPE] === ExchangeType.CREATE_CHILD_SA && !!(msg[HDR_FLAGS]! & HeaderFlag.RESPONSE)
    if (!from.startsWith(A.addr) || !isResponse || held) return false
    held = msg
    return true
  }
  const bRekey = b.engine.rekeyChild(A.id)
  await settle()
  assert.ok(held, "A answered B's rekey")
  const made = a.up[1]!
  assert.equal(made.replaces, k1.spiIn)
  const rekey = tracked(a.engine.rekeyChild(B.id))
  await settle()
  assert.equal(rekey.ended, undefined, 'the rekey ended on CHILD_SA_NOT_FOUND instead of waiting for the peer')
  net.deliver({ address: A.addr, port: PORT, family: 'IPv4' }, B.addr, PORT, held)
  await settle()
  await bRekey
  clock.advance(CHILD_REKEY_RETRY_MS * 2)
  await settle()
  const k3 = await rekey.promise
  await settle()
  assert.equal(k3.replaces, made.spiIn)
  assertMirror(k3, b.up.at(-1)!)
  const ca = a.engine.list()[0]!.children
  const cb = b.engine.list()[0]!.children
  assert.deepEqual(
    ca.map((c) => c.spiIn),
    [k3.spiIn],
  )
  assert.deepEqual(
    cb.map((c) => c.spiOut),
    [k3.spiIn],
  )
})

test('port 500 then NAT-T port (RFC 7296 2.23): IKE_SA_INIT on 500 without marker, the rest on 4500 with it', async (t) => {
  const net = new FakeNetwork()
  const seen: string[] = []
  net.dropIf = (from, to, msg) => {
    seen.push(`${from.split(':')[1]}>${to.split(':')[1]}:${msg.readUInt32BE(0) === 0 ? 'marker' : 'plain'}`)
    return false
  }
  const clock = new FakeClock()
  const keys = { a: generateHostKey(), b: generateHostKey() }
  const peers = new Map<string, PeerInfo>([
    [A.id, { id: A.id, ula: A.ula, publicKeys: [keys.a.publicKey], endpoint: { address: A.addr, port: 500 } }],
    [B.id, { id: B.id, ula: B.ula, publicKeys: [keys.b.publicKey], endpoint: { address: B.addr, port: 500 } }],
  ])
  const engines: IkeEngine[] = []
  for (const [me, key] of [
    [A, keys.a],
    [B, keys.b],
  ] as const) {
    const s500 = net.socket(me.addr)
    const s4500 = net.socket(me.addr)
    await s500.bind(500)
    await s4500.bind(PORT)
    t.after(() => s500.close())
    t.after(() => s4500.close())
    const transport = new DualUdpIkeTransport(
      new UdpIkeTransport(s500, { nonEspMarker: false }),
      new UdpIkeTransport(s4500),
    )
    const e = new IkeEngine(
      { transport, clock, random: new SystemRandom(), log: nullLogger },
      { localId: me.id, localUla: me.ula, hostKey: key, lookupPeer: async (id) => peers.get(id) },
    )
    t.after(() => e.close())
    engines.push(e)
  }
  const k = await engines[0]!.connect(B.id)
  assert.deepEqual(k.remote, { address: B.addr, port: PORT, via: 'encap' })
  assert.deepEqual(seen, ['500>500:plain', '500>500:plain', '4500>4500:marker', '4500>4500:marker'])
  assert.equal(await engines[1]!.dpd(A.id), true)
  assert.equal(seen.at(-2), '4500>4500:marker', 'the responder followed the float')
})

test('simultaneous IKE SA rekey (RFC 7296 2.8.2): one new IKE SA survives on both sides and carries the Child SA', async (t) => {
  const { a, b } = await pair(t)
  await a.engine.connect(B.id)
  for (let round = 0; round < 4; round++) {
    await Promise.allSettled([a.engine.rekeyIke(B.id), b.engine.rekeyIke(A.id)])
    await settle()
    const la = a.engine.list()
    const lb = b.engine.list()
    assert.equal(la.length, 1, `round ${round}: A has ${la.length} IKE SAs`)
    assert.equal(lb.length, 1, `round ${round}: B has ${lb.length} IKE SAs`)
    assert.equal(la[0]!.spiI, lb[0]!.spiI)
    assert.equal(la[0]!.children.length, 1)
    assert.equal(lb[0]!.children.length, 1)
    assert.equal(a.engine.sas.size, 1)
    assert.equal(b.engine.sas.size, 1)
  }
  const k = await b.engine.rekeyChild(A.id)
  await settle()
  assertMirror(k, a.up.at(-1)!)
})

test('close({ deletePeers: true }) deletes the SAs at the peer before stopping', async (t) => {
  const { a, b } = await pair(t)
  await a.engine.connect(B.id)
  await settle()
  await a.engine.close({ deletePeers: true })
  await settle()
  assert.equal(b.engine.list().length, 0)
  assert.deepEqual(
    b.down.map((d) => d.reason),
    ['peer deleted'],
  )
})

test('initiator rejects the responder AUTH: it says AUTHENTICATION_FAILED and the responder drops its SA', async (t) => {
  const wrong = generateHostKey().publicKey
  let peersRef: Map<string, PeerInfo> | undefined
  const { a, b, peers } = await pair(t, {
    a: {
      lookupPeer: async (id) => (id === B.id ? { ...peersRef!.get(B.id)!, publicKeys: [wrong] } : peersRef!.get(id)),
    },
  })
  peersRef = peers
  await assert.rejects(a.engine.connect(B.id), { name: 'IkeError', code: 24 })
  await settle()
  assert.equal(b.engine.list().length, 0)
  assert.deepEqual(
    b.down.map((d) => d.reason),
    ['peer rejected our authentication'],
  )
})
