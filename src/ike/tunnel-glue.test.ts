// Two tunnels (src/tunnel) keyed only by two IKE engines over one fake network: the first packet to a peer
// starts IKE and is delivered once the Child SA is up; rekeys of the Child SA (each side) and of the IKE SA
// lose no packet sent around them.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { SystemRandom } from '../io/random.js'
import { FakeTun } from '../io/tun.fake.js'
import { ipv6 } from '../tunnel/test-pair.js'
import { Tunnel } from '../tunnel/tunnel.js'
import { IkeEngine } from './engine.js'
import { generateHostKey } from './hostkey.js'
import { attachTunnel, type TunnelForIke, tunnelEvents, tunnelTransport } from './tunnel-glue.js'
import type { PeerInfo } from './types.js'

failOnLeakedResources()

const A = { id: 'a.alice.example', ula: 'fd00:a::1', address: '192.0.2.10', port: 4500 }
const B = { id: 'b.alice.example', ula: 'fd00:b::1', address: '198.51.100.20', port: 4500 }

async function settle(): Promise<void> {
  for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r))
}

test('tunnel + IKE: first packet triggers keying, rekeys each way lose nothing', async (t) => {
  const net = new FakeNetwork()
  const clock = new FakeClock()
  const keys = { [A.id]: generateHostKey(), [B.id]: generateHostKey('ecdsa-p256') }
  const peers = new Map<string, PeerInfo>(
    [A, B].map((h) => [
      h.id,
      { id: h.id, ula: h.ula, publicKeys: [keys[h.id]!.publicKey], endpoint: { address: h.address, port: h.port } },
    ]),
  )
  const byUla = new Map([A, B].map((h) => [h.ula, h.id]))
  const mk = async (me: typeof A): Promise<{ tun: FakeTun; tunnel: Tunnel; engine: IkeEngine }> => {
    const socket = net.socket(me.address)
    await socket.bind(me.port, me.address)
    const tun = new FakeTun()
    const tunnel = new Tunnel(
      { tun, socket, clock, log: nullLogger, random: new FakeRandom(me.port + me.id.length) },
      { localUla: me.ula },
    )
    const glue: TunnelForIke = tunnel
    const engine = new IkeEngine(
      {
        transport: tunnelTransport(glue, () => ({ address: me.address, port: me.port })),
        clock,
        random: new SystemRandom(),
        log: nullLogger,
      },
      { localId: me.id, localUla: me.ula, hostKey: keys[me.id], lookupPeer: async (id) => peers.get(id) },
      tunnelEvents(glue, (id) => peers.get(id)?.ula),
    )
    attachTunnel(engine, glue, (ula) => byUla.get(ula), nullLogger)
    tunnel.start()
    t.after(async () => {
      await engine.close()
      await tunnel.close()
    })
    return { tun, tunnel, engine }
  }
  const a = await mk(A)
  const b = await mk(B)
  a.tunnel.addPeer({ ula: B.ula, endpoint: { address: B.address, port: B.port } })

  const sent: Buffer[] = []
  const send = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const p = ipv6(A.ula, B.ula, Buffer.from(`packet ${sent.length}`))
      sent.push(p)
      a.tun.inject(p)
    }
    await settle()
  }
  await send(3) // no SA yet: queued, IKE starts
  assert.equal(a.engine.list().length, 1)
  assert.deepEqual(b.tun.written, sent)

  await a.engine.rekeyChild(B.id)
  await send(2)
  await b.engine.rekeyChild(A.id)
  await send(2)
  clock.advance(5_000) // deferred outbound switch on the rekey responder
  await send(2)
  await a.engine.rekeyIke(B.id)
  await send(2)
  assert.deepEqual(b.tun.written, sent)

  const back = ipv6(B.ula, A.ula, Buffer.from('reply'))
  b.tun.inject(back)
  await settle()
  assert.deepEqual(a.tun.written, [back])
  assert.equal(a.tunnel.peers().length, 1)
  assert.equal(a.engine.list()[0]!.children.length, 1)
  assert.equal(b.engine.list()[0]!.children.length, 1)
})
