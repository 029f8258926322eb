// The UDP listener's batched path (recvmmsg + sendmmsg on Linux) against a burst from a real socket on 127.0.0.1:
// every datagram is handed to the sink once, every answer reaches the address it belongs to, whatever its size
// (an answer longer than a send slot leaves through node:dgram) and whenever it is given (later, after an await).
import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import type { InboundContext } from './transport.js'
import { UdpListener } from './udp-listener.js'
import { SEND_SLOT } from './udp-send-batch.js'

failOnLeakedResources()

const BURST = 600

/** The answer to request `n`: its 4-octet number, then `size - 4` octets of (n & 0xff). */
function answer(n: number, size: number): Buffer {
  const b = Buffer.alloc(size, n & 0xff)
  b.writeUInt32BE(n, 0)
  return b
}

test('a burst of 600 datagrams from two sockets: each handled once, each answer to its sender, batched on Linux', async (t) => {
  const seen: number[] = []
  const sink = (msg: Buffer, ctx: InboundContext): void => {
    const n = msg.readUInt32BE(0)
    seen.push(n)
    // Every 7th answer is given after an await (like an UPDATE after its commit); every 50th is too long for a slot.
    const size = n % 50 === 0 ? SEND_SLOT + 100 : 64 + (n % 300)
    if (n % 7 === 0) setImmediate(() => ctx.reply(answer(n, size)))
    else ctx.reply(answer(n, size))
  }
  const l = new UdpListener({ log: nullLogger, sink })
  t.after(() => l.close())
  await l.listen('127.0.0.1', 0)
  // Room for the whole burst in each client's receive buffer: a drop there would not be the listener's.
  const clients = [0, 1].map(() => dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 }))
  t.after(() => Promise.all(clients.map((c) => new Promise<void>((r) => c.close(() => r())))))
  for (const c of clients) await new Promise<void>((r) => c.bind(0, '127.0.0.1', () => r()))
  const got = new Map<number, { client: number; ok: boolean }>()
  const done = new Promise<void>((resolve) => {
    clients.forEach((c, ci) => {
      c.on('message', (m) => {
        const n = m.readUInt32BE(0)
        const size = n % 50 === 0 ? SEND_SLOT + 100 : 64 + (n % 300)
        got.set(n, { client: ci, ok: m.equals(answer(n, size)) })
        if (got.size === BURST) resolve()
      })
    })
  })
  for (let n = 0; n < BURST; n++) {
    const q = Buffer.alloc(32)
    q.writeUInt32BE(n, 0)
    clients[n % 2]!.send(q, l.port, '127.0.0.1')
  }
  await Promise.race([
    done,
    new Promise((_, rej) =>
      setTimeout(() => rej(new Error(`${got.size}/${BURST} answers, ${seen.length} handled`)), 5000).unref(),
    ),
  ])
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    Array.from({ length: BURST }, (_, i) => i),
    'each datagram handled exactly once',
  )
  for (let n = 0; n < BURST; n++) {
    const g = got.get(n)
    assert.ok(g?.ok, `answer ${n} intact`)
    assert.equal(g.client, n % 2, `answer ${n} to its sender`)
  }
  const b = l.batching
  if (process.platform === 'linux') {
    assert.ok(b, 'batching on Linux')
    t.diagnostic(`batching: ${JSON.stringify(b)}`)
    const later = Array.from({ length: BURST }, (_, n) => n).filter((n) => n % 7 === 0).length
    assert.ok(b.sendCalls > 0 && b.sendCalls < BURST / 4, 'answers left in batches by sendmmsg')
    assert.equal(b.sent + b.fallbacks, BURST - later, 'every answer given during a batch went through the batcher')
    assert.ok(b.fallbacks >= 10, 'the 10 oversized answers given during a batch went through node:dgram')
  }
})
