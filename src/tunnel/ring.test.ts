import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Worker } from 'node:worker_threads'
import fc from 'fast-check'
import { createRing, PacketRing } from './ring.js'

test('ring: FIFO order, full ring refuses, oversize refused, indices wrap', () => {
  const init = createRing(4, 16)
  const prod = new PacketRing(init)
  const cons = new PacketRing(init)
  const got: string[] = []
  const take = (b: Buffer, off: number, len: number): void => {
    got.push(b.toString('latin1', off, off + len))
  }
  for (let round = 0; round < 10; round++) {
    for (let i = 0; i < 4; i++) assert.ok(prod.push(Buffer.from(`p${round}.${i}`), 0, `p${round}.${i}`.length))
    assert.equal(prod.push(Buffer.from('x'), 0, 1), false, 'full')
    assert.equal(cons.drain(take, 100), 0, 'nothing visible before publish')
    prod.publish()
    assert.equal(cons.drain(take, 2), 2)
    assert.equal(cons.drain(take, 100), 2)
  }
  assert.equal(prod.push(Buffer.alloc(17), 0, 17), false, 'larger than a slot')
  assert.deepEqual(got.slice(0, 4), ['p0.0', 'p0.1', 'p0.2', 'p0.3'])
  assert.equal(got.length, 40)
})

test('ring: property, any interleaving of pushes and drains preserves order and loses only refused packets', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 20 })), { maxLength: 300 }), (ops) => {
      const init = createRing(8, 8)
      const p = new PacketRing(init)
      const c = new PacketRing(init)
      const accepted: number[] = []
      const got: number[] = []
      let n = 0
      for (const op of ops) {
        if (op < 0) {
          c.drain((b, off) => got.push(b.readUInt32LE(off)), 3)
          continue
        }
        const b = Buffer.alloc(4)
        b.writeUInt32LE(n)
        if (p.push(b, 0, 4)) accepted.push(n)
        p.publish()
        n++
      }
      c.drain((b, off) => got.push(b.readUInt32LE(off)), 1000)
      assert.deepEqual(got, accepted)
    }),
    { numRuns: 300 },
  )
})

test('ring: a consumer on another thread receives everything, woken from sleep', async (t) => {
  const init = createRing(64, 8)
  const n = 20_000
  const src = `
    const { parentPort, workerData } = require('node:worker_threads')
    import(workerData.ring).then(async ({ PacketRing, consumeRing }) => {
      const ring = new PacketRing(workerData.init)
      let sum = 0, count = 0, last = -1, ordered = true
      await consumeRing(ring, (b, off) => { const v = b.readUInt32LE(off); if (v !== last + 1) ordered = false; last = v; sum += v; count++ },
        () => {}, () => count >= workerData.n)
      parentPort.postMessage({ sum, count, ordered })
    })`
  const w = new Worker(src, {
    eval: true,
    workerData: { init, n, ring: new URL('./ring.js', import.meta.url).href },
  })
  t.after(() => w.terminate())
  const done = new Promise<{ sum: number; count: number; ordered: boolean }>((r) => w.once('message', r))
  const p = new PacketRing(init)
  const b = Buffer.alloc(4)
  for (let i = 0; i < n; ) {
    b.writeUInt32LE(i)
    if (p.push(b, 0, 4)) {
      i++
      if (i % 50 === 0) {
        p.publish()
        await new Promise((r) => setImmediate(r))
      }
    } else {
      p.publish()
      await new Promise((r) => setTimeout(r, 1))
    }
  }
  p.publish()
  const r = await done
  assert.equal(r.count, n)
  assert.equal(r.sum, (n * (n - 1)) / 2)
  assert.ok(r.ordered)
})
