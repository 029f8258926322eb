import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { nullLogger } from '../io/log.js'
import { SystemRandom } from '../io/random.js'
import { derivePsk } from './auth.js'
import { DhGroup } from './constants.js'
import { IkeEngine, type IkeEngineOpts } from './engine.js'
import { generateHostKey, type HostKey } from './hostkey.js'
import { DEFAULT_IKE_POLICY } from './proposals.js'
import { UdpIkeTransport } from './transport.js'
import type { ChildSaKeys, IkeEvents, PeerInfo } from './types.js'

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
