// Issue 16 finding 4: connection slots exhausted without authentication. 1,000 TCP connects to the TLS port that
// never send a byte, and a plain-TCP client that sends one byte every 2 s, must not keep legitimate clients out:
// a TLS handshake deadline, a whole-message deadline and a per-source connection cap.
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, test } from 'node:test'
import { RRType } from '../../src/dns/wire/rr-table.js'
import { type AccountJson, RawSession, ServerProcess, signedQuery, sleep, tsigKey, ZONE } from './security-harness.js'

const srv = new ServerProcess()
let alice: AccountJson

before(async () => {
  alice = await srv.addAccount('alice')
  await srv.start()
})
after(() => srv.cleanup())

function connectIdle(port: number, localAddress: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress })
    s.on('error', () => resolve(undefined))
    s.once('connect', () => resolve(s))
  })
}

test('1,000 idle connects to the TLS port from one source do not keep a legitimate DoT client out', async (t) => {
  const idle: net.Socket[] = []
  t.after(() => {
    for (const s of idle) s.destroy()
  })
  for (let i = 0; i < 1000; i++) {
    const s = await connectIdle(srv.ports.tls!, '127.0.0.2')
    if (s) idle.push(s)
  }
  await sleep(200)
  const t0 = performance.now()
  const s = await RawSession.open(srv)
  t.after(() => s.close())
  assert.equal(await s.dns(signedQuery(`alice.${ZONE}.`, RRType.SOA, tsigKey(alice))), 0, 'alice is served')
  t.diagnostic(`legitimate query answered ${(performance.now() - t0).toFixed(0)} ms into the attack`)
})

test('a plain-TCP client dribbling one byte every 2 s is closed by the whole-message deadline', async (t) => {
  const s = await connectIdle(srv.ports.dns, '127.0.0.5')
  assert.ok(s)
  t.after(() => s.destroy())
  let closedAt: number | undefined
  const t0 = performance.now()
  s.on('close', () => {
    closedAt = performance.now() - t0
  })
  const msg = Buffer.alloc(40, 0x41)
  msg.writeUInt16BE(38, 0)
  for (let i = 0; i < msg.length && closedAt === undefined && performance.now() - t0 < 12_000; i++) {
    if (!s.destroyed) s.write(msg.subarray(i, i + 1))
    await sleep(2000)
  }
  assert.ok(closedAt !== undefined && closedAt < 12_000, `still open after ${(performance.now() - t0).toFixed(0)} ms`)
})
