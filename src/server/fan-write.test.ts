// The batched fan-out writer against real TCP connections of a StreamListener on 127.0.0.1: with the fanout
// addon (when built: make build / src/tunnel/native/build.sh) and with its fallback (node's socket.write), every
// watcher gets every frame exactly once and in order, and one that stops reading neither blocks the others nor
// loses or reorders anything once it reads again.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { test } from 'node:test'
import { frameTcp } from '../dns/tcp-framing.js'
import { nullLogger } from '../io/log.js'
import { FAN_BATCH, FanWriter } from './fan-write.js'
import { fanoutNative, type SendAll } from './fanout-native.js'
import { StreamListener } from './stream-listener.js'
import type { StreamConnection } from './transport.js'

const ADDON = new URL('../../native/fanout.node', import.meta.url)
const native = fanoutNative?.sendAll

interface Watcher {
  readonly sock: Socket
  /** Everything received so far. */
  readonly got: Buffer[]
  readonly conn: StreamConnection
}

/** A listener with `n` connected watchers, each registered by one message it sends (its connection object kept). */
async function setup(n: number): Promise<{ watchers: Watcher[]; close: () => Promise<void> }> {
  const conns = new Map<number, StreamConnection>()
  const listener = new StreamListener(
    {
      log: nullLogger,
      sink: (msg, ctx) => {
        conns.set(msg.readUInt16BE(0), ctx.connection!)
        ctx.reply(undefined)
      },
    },
    { maxConnections: n + 10, maxPerSource: n + 10, idleTimeoutMs: 0 },
  )
  const local = await listener.listen('127.0.0.1', 0)
  const port = Number(local.split(':')[1])
  const socks: { sock: Socket; got: Buffer[] }[] = []
  for (let i = 0; i < n; i++) {
    const sock = connect({ host: '127.0.0.1', port })
    await new Promise<void>((r) => sock.once('connect', () => r()))
    const got: Buffer[] = []
    sock.on('data', (b) => got.push(b))
    const hello = Buffer.alloc(12)
    hello.writeUInt16BE(i, 0)
    sock.write(frameTcp(hello))
    socks.push({ sock, got })
  }
  for (let t = 0; t < 200 && conns.size < n; t++) await new Promise((r) => setTimeout(r, 10))
  assert.equal(conns.size, n)
  const watchers = socks.map((s, i) => ({ ...s, conn: conns.get(i)! }))
  return {
    watchers,
    close: async () => {
      for (const w of watchers) w.sock.destroy()
      await listener.close()
    },
  }
}

/** Frame `i` of a run: a length prefix, then `size` octets that name the frame. */
function frame(i: number, size = 64): Buffer {
  const body = Buffer.alloc(size, i & 0xff)
  body.writeUInt32BE(i, 0)
  return frameTcp(body)
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  for (let t = 0; t < ms / 10 && !cond(); t++) await new Promise((r) => setTimeout(r, 10))
  assert.ok(cond(), what)
}

const received = (w: Watcher): Buffer => Buffer.concat(w.got)

for (const mode of ['addon', 'fallback'] as const) {
  const sendAll: SendAll | null = mode === 'addon' ? (native ?? null) : null
  const skip = mode === 'addon' && !native ? 'fanout.node not built' : false

  test(`${mode}: every watcher gets every frame once and in order, over several batches`, { skip }, async () => {
    const n = FAN_BATCH + 44
    const { watchers, close } = await setup(n)
    try {
      const w = new FanWriter<StreamConnection>({ sendAll })
      assert.equal(w.native, mode === 'addon')
      const frames = [frame(1), frame(2), frame(3)]
      for (const f of frames) for (const x of watchers) w.write(x.conn, f)
      w.flush()
      const want = Buffer.concat(frames)
      await until('all received', () => watchers.every((x) => received(x).length >= want.length))
      for (const x of watchers) assert.deepEqual(received(x), want)
      if (mode === 'addon') assert.deepEqual([w.direct, w.viaNode], [3 * n, 0], 'nothing queued: all sent directly')
      else assert.deepEqual([w.direct, w.viaNode], [0, 3 * n])
    } finally {
      await close()
    }
  })

  test(`${mode}: a watcher that stops reading blocks no one and later gets all, in order`, { skip }, async () => {
    const { watchers, close } = await setup(5)
    try {
      const slow = watchers[0]!
      let queuedSeen = 0
      const w = new FanWriter<StreamConnection>({ sendAll, onQueued: (c) => void (c === slow.conn && queuedSeen++) })
      slow.sock.pause()
      // Far more than the slow socket's kernel buffers on both ends take: the rest stays queued in node.
      const frames = Array.from({ length: 300 }, (_, i) => frame(i, 60_000))
      const want = Buffer.concat(frames)
      for (const f of frames) {
        for (const x of watchers) w.write(x.conn, f)
        w.flush()
        // Let the readers read (and node's queue drain): the fast ones must keep up while the slow one does not.
        await new Promise((r) => setImmediate(r))
      }
      const fast = watchers.slice(1)
      await until('the others have everything', () => fast.every((x) => received(x).length === want.length))
      for (const x of fast) assert.ok(received(x).equals(want))
      assert.ok(received(slow).length < want.length, 'the slow watcher read nothing more while paused')
      assert.ok(slow.conn.queued! > 0, "the slow watcher's rest is held by node")
      assert.ok(queuedSeen > 0)
      if (mode === 'addon') assert.ok(w.viaNode > 0 && w.direct > 0, `direct ${w.direct}, via node ${w.viaNode}`)
      slow.sock.resume()
      await until('the slow watcher catches up', () => received(slow).length >= want.length, 20_000)
      assert.ok(received(slow).equals(want), 'every frame once, in order, nothing lost at the partial sends')
    } finally {
      await close()
    }
  })
}

test('addon: the same connection twice in a batch, and one closed before the flush', { skip: !native }, async () => {
  const { watchers, close } = await setup(3)
  try {
    const w = new FanWriter<StreamConnection>({ sendAll: native ?? null })
    const f = frame(7)
    const [a, b, c] = watchers as [Watcher, Watcher, Watcher]
    w.write(a.conn, f)
    w.write(b.conn, f)
    w.write(a.conn, f)
    w.write(c.conn, f)
    w.flush()
    assert.equal(w.direct, 4, 'a twice (the second in a batch of its own), b and c once')
    c.sock.destroy()
    await until('c closed on the server side', () => c.conn.closed)
    w.write(c.conn, f)
    w.flush()
    await until('a and b received', () => received(a).length === 2 * f.length && received(b).length === f.length)
    assert.deepEqual(received(a), Buffer.concat([f, f]))
    assert.equal(w.direct, 4)
    assert.equal(w.viaNode, 1, 'the closed connection was handed to node (which refuses it), not sent to')
  } finally {
    await close()
  }
})

test('the addon is loaded wherever it was built (Linux)', () => {
  if (process.platform !== 'linux' || !existsSync(ADDON) || process.env.AUTOTUNNEL_FANOUT_NATIVE === '0') return
  assert.equal(typeof native, 'function', 'fanout.node exists but did not load')
  assert.throws(() => native!(new Int32Array(1), 2, Buffer.alloc(1), new Int32Array(1)), RangeError)
  const out = new Int32Array(1)
  assert.equal(native!(new Int32Array([-1]), 1, Buffer.alloc(1), out), 0)
  assert.equal(out[0], -9, 'EBADF for an fd below 0, without a call')
})
