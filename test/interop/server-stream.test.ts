// TCP and TLS transports of the real server: pipelined messages answered out of order (RFC 7766 6.2.1.1),
// messages split across segments, the idle timeout (RFC 7766 6.2.3), and a signed UPDATE over DoT (RFC 7858).
import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { test } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { signMessage, verifyMessage } from '../../src/dns/tsig.js'
import { Rcode } from '../../src/dns/wire/header.js'
import { decodeMessage, encodeMessage, type Message } from '../../src/dns/wire/message.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { keyOf, queryMessage, updateMessage } from './server-client.js'
import { ServerProcess, ZONE } from './server-harness.js'

const Z = `${ZONE}.`
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function frame(b: Buffer): Buffer {
  const l = Buffer.alloc(2)
  l.writeUInt16BE(b.length)
  return Buffer.concat([l, b])
}

/** Collects framed messages from a stream socket. */
function reader(sock: Socket): { next: () => Promise<Buffer>; raw: Buffer[] } {
  let buf = Buffer.alloc(0)
  const raw: Buffer[] = []
  const waiters: ((b: Buffer) => void)[] = []
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const m = buf.subarray(2, 2 + buf.readUInt16BE(0))
      buf = buf.subarray(2 + m.length)
      const w = waiters.shift()
      if (w) w(Buffer.from(m))
      else raw.push(Buffer.from(m))
    }
  })
  return {
    raw,
    next: () =>
      new Promise((resolve, reject) => {
        const b = raw.shift()
        if (b) return resolve(b)
        const t = setTimeout(() => reject(new Error('no answer')), 5000)
        waiters.push((x) => {
          clearTimeout(t)
          resolve(x)
        })
      }),
  }
}

test('TCP: pipelined queries overtake an UPDATE waiting for its commit; split messages reassemble', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  const key = keyOf(alice)
  await srv.start([], { tls: false })
  const sock = netConnect(srv.ports.dns, '127.0.0.1')
  t.after(() => sock.destroy())
  await new Promise<void>((r) => sock.once('connect', () => r()))
  const rd = reader(sock)
  const up = signMessage(
    updateMessage(1, Z, [
      { name: `pipe.alice.${Z}`, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: 'fd00::5' } },
    ]),
    key,
  )
  const q2 = encodeMessage(queryMessage(2, Z, RRType.SOA))
  const q3 = encodeMessage(queryMessage(3, `_nx.${Z}`, RRType.A))
  sock.write(Buffer.concat([frame(up.wire), frame(q2), frame(q3)]))
  const order: number[] = []
  const byId = new Map<number, Message>()
  for (let i = 0; i < 3; i++) {
    const b = await rd.next()
    const m = decodeMessage(b)
    order.push(m.id)
    byId.set(m.id, m)
    if (m.id === 1) assert.ok(verifyMessage(b, () => key, { requestMac: up.mac }).ok, 'signed UPDATE response')
  }
  assert.deepEqual(order, [2, 3, 1], 'answers in the order they are ready')
  assert.equal(byId.get(1)!.rcode, Rcode.NOERROR)
  assert.equal(byId.get(3)!.rcode, Rcode.NXDOMAIN)
  // One message written a byte at a time.
  const q4 = frame(encodeMessage(queryMessage(4, Z, RRType.NS)))
  for (const b of q4) {
    sock.write(Buffer.from([b]))
    await new Promise((r) => setImmediate(r))
  }
  const a4 = decodeMessage(await rd.next())
  assert.equal(a4.id, 4)
  assert.equal(a4.answers[0]?.type, RRType.NS)
})

test('TCP idle timeout closes a silent connection; DoT carries a signed UPDATE', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  const key = keyOf(alice)
  await srv.start(['--tcp-idle-timeout', '300'])
  const sock = netConnect(srv.ports.dns, '127.0.0.1')
  t.after(() => sock.destroy())
  const opened = Date.now()
  await new Promise<void>((r) => sock.once('close', () => r()))
  const idle = Date.now() - opened
  assert.ok(idle >= 250 && idle < 3000, `closed after ${idle} ms`)

  const tls = tlsConnect({ host: '127.0.0.1', port: srv.ports.tls!, rejectUnauthorized: false })
  t.after(() => tls.destroy())
  await new Promise<void>((r) => tls.once('secureConnect', () => r()))
  const rd = reader(tls)
  const up = signMessage(
    updateMessage(9, Z, [
      {
        name: `dot.alice.${Z}`,
        type: RRType.TXT,
        class: RRClass.IN,
        ttl: 60,
        data: { strings: [Buffer.from('via DoT')] },
      },
    ]),
    key,
  )
  tls.write(frame(up.wire))
  const b = await rd.next()
  const v = verifyMessage(b, () => key, { requestMac: up.mac })
  assert.ok(v.ok)
  assert.equal(v.msg.rcode, Rcode.NOERROR)
  const q = signMessage(queryMessage(10, `dot.alice.${Z}`, RRType.TXT), key)
  tls.write(frame(q.wire))
  const a = decodeMessage(await rd.next())
  assert.deepEqual(
    a.answers.map((r) => (r.data as { strings: Buffer[] }).strings.map(String)),
    [['via DoT']],
  )
})

test('UDP truncation by EDNS buffer size, signed truncated answers, dig retries over TCP', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  await srv.start([], { tls: false })
  const key = `${alice.algorithm}:${alice.keyName}:${alice.secret}`
  const h = `big.alice.${Z}`
  const adds = Array.from(
    { length: 30 },
    (_, i) => `update add ${h} 60 TXT "record ${String(i).padStart(2, '0')} ${'x'.repeat(40)}"`,
  )
  assert.equal((await srv.nsupdate(key, adds)).code, 0)
  const noEdns = await srv.dig(['-y', key, '+noedns', '+ignore', h, 'TXT'])
  assert.match(noEdns.stdout, /flags: qr aa tc rd;/)
  assert.match(noEdns.stdout, /MSG SIZE {2}rcvd: ([1-4]\d\d|50\d|51[0-2])\n/)
  assert.doesNotMatch(noEdns.stdout + noEdns.stderr, /Couldn't verify|tsig indicates error/)
  const big = await srv.dig(['-y', key, '+bufsize=4096', '+ignore', h, 'TXT'])
  assert.match(big.stdout, /flags: qr aa rd;/)
  assert.match(big.stdout, /ANSWER: 30,/)
  const retried = await srv.dig(['-y', key, '+noedns', '+short', h, 'TXT'])
  assert.equal(retried.stdout.trim().split('\n').length, 30, 'dig falls back to TCP on TC')
})

test('--max-connections bounds open TCP and TLS connections per listener; the next one is closed at once', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  await srv.start(['--max-connections', '3'], { metrics: true })
  const socks: Socket[] = []
  t.after(() => {
    for (const s of socks) s.destroy()
  })
  const open = async (tls: boolean): Promise<{ sock: Socket; closed: Promise<void> }> => {
    const sock = tls
      ? tlsConnect({ host: '127.0.0.1', port: srv.ports.tls!, rejectUnauthorized: false })
      : netConnect({ host: '127.0.0.1', port: srv.ports.dns })
    socks.push(sock)
    sock.on('error', () => {})
    const closed = new Promise<void>((r) => sock.once('close', () => r()))
    await new Promise<void>((r, j) => {
      sock.once(tls ? 'secureConnect' : 'connect', () => r())
      sock.once('close', () => j(new Error('closed before connecting')))
    }).catch(() => {})
    return { sock, closed }
  }
  const ask = async (sock: Socket): Promise<number> => {
    const r = reader(sock)
    sock.write(frame(encodeMessage(queryMessage(7, Z, RRType.SOA))))
    return decodeMessage(await r.next()).rcode
  }
  for (const tls of [false, true]) {
    const first = await Promise.all([open(tls), open(tls), open(tls)])
    for (const c of first) assert.equal(await ask(c.sock), Rcode.NOERROR)
    const extra = await open(tls)
    const closedAtOnce = await Promise.race([extra.closed.then(() => true), sleep(2000).then(() => false)])
    assert.ok(closedAtOnce, `${tls ? 'TLS' : 'TCP'}: the 4th connection is closed`)
    for (const c of first) {
      c.sock.destroy()
      await c.closed
    }
    await sleep(100)
    const after = await open(tls)
    assert.equal(await ask(after.sock), Rcode.NOERROR, 'room again once others closed')
    after.sock.destroy()
  }
  const text = await (await fetch(`http://127.0.0.1:${srv.ports.metrics}/metrics`)).text()
  assert.match(text, /^autotunnel_stream_connections_refused_total 2$/m)
})
