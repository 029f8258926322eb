// Issue 16 finding 2: a DNS Push connection is bound to a user only by a fresh TSIG-signed *request* received on
// that connection. A signed response (an LLQ event the server sent in clear over UDP) or a replayed request
// (seen on the network before) must not bind, so the attacker's SUBSCRIBE to alice's names stays REFUSED.
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { after, before, test } from 'node:test'
import { signMessage } from '../../src/dns/tsig.js'
import { Opcode } from '../../src/dns/wire/header.js'
import { emptyMessage } from '../../src/dns/wire/message.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { type AccountJson, RawSession, ServerProcess, signedQuery, tsigKey, ZONE } from './security-harness.js'

const srv = new ServerProcess()
let alice: AccountJson

before(async () => {
  alice = await srv.addAccount('alice')
  await srv.start()
})
after(() => srv.cleanup())

test('a server-signed response (an LLQ event captured off UDP) replayed on a TLS connection does not bind it', async (t) => {
  // What an LLQ event of alice's looks like: a response (QR=1) signed with her key, not chained to a request.
  const event = signMessage(
    emptyMessage({
      id: 4242,
      qr: true,
      aa: true,
      opcode: Opcode.QUERY,
      questions: [{ name: `laptop.alice.${ZONE}.`, type: RRType.AAAA, class: RRClass.IN }],
    }),
    tsigKey(alice),
  ).wire
  const s = await RawSession.open(srv)
  t.after(() => s.close())
  s.s.send(event)
  assert.equal(await s.subscribe(`laptop.alice.${ZONE}.`), 5, 'REFUSED')
})

test('alice’s signed query, captured off UDP and replayed on a TLS connection, does not bind it', async (t) => {
  const q = signedQuery(`alice.${ZONE}.`, RRType.SOA, tsigKey(alice))
  // alice sends it over UDP (in clear); the server answers it.
  const u = createSocket('udp4')
  t.after(() => u.close())
  const answered = new Promise<number>((resolve) => u.once('message', (m) => resolve(m[3]! & 0xf)))
  u.send(q, srv.ports.dns, '127.0.0.1')
  assert.equal(await answered, 0)
  const s = await RawSession.open(srv)
  t.after(() => s.close())
  await s.dns(q)
  assert.equal(await s.subscribe(`laptop.alice.${ZONE}.`), 5, 'REFUSED')
})

test('a fresh signed query on the connection still binds it (the legitimate path)', async (t) => {
  const s = await RawSession.open(srv)
  t.after(() => s.close())
  assert.equal(await s.dns(signedQuery(`alice.${ZONE}.`, RRType.SOA, tsigKey(alice))), 0)
  assert.equal(await s.subscribe(`laptop.alice.${ZONE}.`), 0)
})
