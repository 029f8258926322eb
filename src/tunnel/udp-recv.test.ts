import assert from 'node:assert/strict'
import dgram from 'node:dgram'
import { test } from 'node:test'
import { stopDgramReading, UdpGso } from './udp-gso.js'
import { RECV_BATCH, RECV_SLOT, UdpRecvBatch } from './udp-recv.js'

const bound = (type: 'udp4' | 'udp6', address: string): Promise<dgram.Socket> =>
  new Promise((resolve, reject) => {
    const s = dgram.createSocket(type)
    s.once('error', reject)
    s.bind(0, address, () => resolve(s))
  })

for (const [type, address] of [
  ['udp4', '127.0.0.1'],
  ['udp6', '::1'],
] as const) {
  test(`recvmmsg batch (${type}): everything after the first datagram, in order, with the sender's address`, {
    skip: process.platform !== 'linux',
  }, async (t) => {
    const rx = await bound(type, address)
    const tx = await bound(type, address)
    t.after(() => {
      rx.close()
      tx.close()
    })
    const rb = UdpRecvBatch.forSocket(rx)
    assert.ok(rb, 'koffi and the fd are available on Linux')
    const n = RECV_BATCH + 10
    const msgs = Array.from({ length: n }, (_, i) => Buffer.from(`datagram ${i} `.padEnd(20 + i, 'x')))
    const got: { text: string; address: string; port: number }[] = []
    const done = new Promise<void>((resolve) => {
      rx.on('message', (m, r) => {
        got.push({ text: m.toString(), address: r.address, port: r.port })
        for (;;) {
          const k = rb.drain((b, off, len, from, truncated) => {
            assert.equal(truncated, false)
            got.push({ text: b.toString('latin1', off, off + len), address: from.address, port: from.port })
          })
          if (k === 0) break
        }
        if (got.length >= n) resolve()
      })
    })
    // Queue them all before the event loop gets to read any.
    for (const m of msgs) tx.send(m, rx.address().port, address)
    await done
    assert.deepEqual(
      got.map((g) => g.text),
      msgs.map((m) => m.toString()),
    )
    const me = tx.address()
    for (const g of got) assert.deepEqual([g.address, g.port], [me.address, me.port])
    assert.ok(rb.datagrams > 0 && rb.datagrams <= n - 1, `batched ${rb.datagrams} in ${rb.calls} calls`)
  })
}

test('recvmmsg batch: an empty socket gives 0 without blocking; a 60,000-octet datagram arrives whole', {
  skip: process.platform !== 'linux',
}, async (t) => {
  const rx = await bound('udp4', '127.0.0.1')
  const tx = await bound('udp4', '127.0.0.1')
  t.after(() => {
    rx.close()
    tx.close()
  })
  const rb = UdpRecvBatch.forSocket(rx)!
  assert.equal(
    rb.drain(() => assert.fail('nothing queued')),
    0,
  )
  const seen: { len: number; truncated: boolean; sum: number }[] = []
  const first = new Promise<string>((resolve) =>
    rx.once('message', (m) => {
      rb.drain((b, off, len, _from, truncated) => {
        let sum = 0
        for (let i = off; i < off + len; i++) sum += b[i]!
        seen.push({ len, truncated, sum })
      })
      resolve(m.toString())
    }),
  )
  tx.send(Buffer.from('first'), rx.address().port, '127.0.0.1')
  tx.send(Buffer.alloc(60_000, 7), rx.address().port, '127.0.0.1')
  assert.equal(await first, 'first')
  assert.ok(RECV_SLOT >= 65_507)
  assert.deepEqual(seen, [{ len: 60_000, truncated: false, sum: 7 * 60_000 }])
})

test('UDP_GRO: a peer GSO send arrives as one run, cut back into its datagrams with their sizes, in order', {
  skip: process.platform !== 'linux',
}, async (t) => {
  const rx = await bound('udp4', '127.0.0.1')
  const tx = await bound('udp4', '127.0.0.1')
  t.after(() => {
    rx.close()
    tx.close()
  })
  // Only our reads from here on (node's recvmsg would take runs without their segment size).
  assert.ok(stopDgramReading(rx))
  const rb = UdpRecvBatch.forSocket(rx)!
  assert.ok(rb.enableGro(), 'Linux >= 5.0 has UDP_GRO')
  const gso = UdpGso.forSocket(tx)!
  const seg = 1200
  const sizes = [seg, seg, seg, seg, 700]
  let at = 0
  for (const [i, n] of sizes.entries()) {
    gso.batch.fill(i + 1, at, at + n)
    at += n
  }
  assert.ok(gso.send(at, seg, '127.0.0.1', rx.address().port))
  tx.send(Buffer.from('plain'), rx.address().port, '127.0.0.1')
  const got: string[] = []
  const deadline = Date.now() + 5000
  while (got.length < sizes.length + 1 && Date.now() < deadline) {
    rb.drain((b, off, len, from, truncated) => {
      assert.equal(truncated, false)
      assert.equal(from.port, tx.address().port)
      got.push(len === 5 ? b.toString('latin1', off, off + len) : `${b[off]}x${len}`)
    })
    await new Promise((r) => setTimeout(r, 5))
  }
  assert.deepEqual(got, ['1x1200', '2x1200', '3x1200', '4x1200', '5x700', 'plain'])
  assert.equal(rb.groRuns, 1, 'the GSO send came as one run')
})
