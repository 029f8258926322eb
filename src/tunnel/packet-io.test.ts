import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { UdpSocket } from '../io/datagram.js'
import { newCounters } from './counters.js'
import { receiveFromUdp } from './packet-io.js'
import { UdpGso } from './udp-gso.js'

const fdpollBuilt = existsSync(fileURLToPath(new URL('../../native/fdpoll.node', import.meta.url)))

test('receive with UDP_GRO: node stops reading, the polled fd delivers GSO runs as datagrams, IKE as copies', {
  skip: process.platform !== 'linux' || !fdpollBuilt ? 'needs Linux and dist/native/fdpoll.node' : false,
}, async () => {
  const rx = new UdpSocket({ type: 'udp4' })
  const tx = new UdpSocket({ type: 'udp4' })
  const { port } = await rx.bind(0, '127.0.0.1')
  await tx.bind(0, '127.0.0.1')
  const got: string[] = []
  let batches = 0
  let resolveAll: () => void = () => {}
  const all = new Promise<void>((r) => {
    resolveAll = r
  })
  const kept: Buffer[] = []
  const { rb, stop } = receiveFromUdp(
    rx,
    rx.raw,
    (msg) => {
      got.push(msg.readUInt32BE(0) === 0 ? `ike:${msg.toString('latin1', 4)}` : `${msg[4]}x${msg.length}`)
      if (msg.readUInt32BE(0) === 0) kept.push(msg)
      if (got.length === 7) resolveAll()
    },
    newCounters().drops,
    () => batches++,
    true,
  )
  try {
    assert.ok(rb?.gro, 'GRO on')
    const gso = UdpGso.forSocket(tx.raw)!
    // Five ESP-looking datagrams (non-zero first octets) in one GSO send, then an IKE message (non-ESP marker).
    for (let i = 0; i < 5; i++) {
      gso.batch.fill(0xaa, i * 1000, i * 1000 + 4)
      gso.batch.fill(i + 1, i * 1000 + 4, (i + 1) * 1000)
    }
    assert.ok(gso.send(5000, 1000, '127.0.0.1', port))
    const ike = Buffer.concat([Buffer.alloc(4), Buffer.from('hello')])
    await new Promise<void>((r, j) => tx.send(ike, 0, ike.length, port, '127.0.0.1', (e) => (e ? j(e) : r())))
    gso.batch.fill(0xbb, 0, 4)
    gso.batch.fill(9, 4, 600)
    assert.ok(gso.send(600, 600, '127.0.0.1', port))
    await Promise.race([all, new Promise((_, j) => setTimeout(() => j(new Error(`got only ${got}`)), 5000))])
    assert.deepEqual(got, ['1x1000', '2x1000', '3x1000', '4x1000', '5x1000', 'ike:hello', '9x600'])
    assert.equal(rb.groRuns, 1)
    assert.ok(batches >= 1)
    // The IKE message was copied out of the reused receive buffer.
    assert.equal(kept[0]!.toString('latin1', 4), 'hello')
  } finally {
    stop()
    await rx.close()
    await tx.close()
  }
})
