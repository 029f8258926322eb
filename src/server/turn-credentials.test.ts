import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { test } from 'node:test'
import { Opcode, Rcode } from '../dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage } from '../dns/wire/message.js'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import type { ServiceConfig } from './config.js'
import { turnRecords } from './discovery.js'
import { aliceService, ZONE } from './test-helpers.js'

failOnLeakedResources()

const base: ServiceConfig = {
  zone: ZONE,
  nsName: `ns.${ZONE}`,
  nsAddrs: ['192.0.2.53'],
  hostmaster: `hostmaster.${ZONE}`,
  dnsPort: 5300,
  tlsPort: undefined,
  leaseMinSec: 2,
  leaseMaxSec: 5,
  infraTtlSec: 300,
  negativeTtlSec: 60,
  fudgeSec: 300,
}

function setup(t: { after: (fn: () => void) => void }, cfg: ServiceConfig) {
  return aliceService(t, cfg, new FakeClock(Date.UTC(2026, 0, 1)))
}

test('--turn: SRV _turn._udp.ZONE to t1._turn._udp.ZONE with its A, public', (t) => {
  const cfg = { ...base, turn: [{ host: '198.51.100.20', port: 3478 }] }
  assert.deepEqual(
    turnRecords(cfg).map((r) => r.text),
    ['0 0 3478 t1._turn._udp.members.example.', '198.51.100.20'],
  )
  const { svc } = setup(t, cfg)
  let out: Buffer | undefined
  svc.handle(
    encodeMessage(
      emptyMessage({
        id: 1,
        opcode: Opcode.QUERY,
        questions: [{ name: `_turn._udp.${ZONE}`, type: RRType.SRV, class: RRClass.IN }],
      }),
    ),
    {
      peer: { transport: 'udp', address: '127.0.0.1', port: 1, local: '127.0.0.1:53' },
      reply: (b) => {
        out = b
      },
      send: () => {},
    },
  )
  const m = decodeMessage(out!)
  assert.equal(m.rcode, Rcode.NOERROR)
  assert.deepEqual(m.answers[0]?.data, { priority: 0, weight: 0, port: 3478, target: `t1._turn._udp.${ZONE}` })
})

test('ephemeral TURN credentials (coturn REST scheme): TXT for the signed user only, HMAC-SHA1 of EXPIRY:USER', (t) => {
  const secret = Buffer.from('rest-secret')
  const { svc, clock } = setup(t, { ...base, turnSecret: secret, turnCredentialTtlSec: 3600 })
  const name = `_turn-credentials.alice.${ZONE}`
  assert.equal(svc.answerer.answer(name, RRType.TXT, undefined).rcode, Rcode.REFUSED)
  assert.equal(svc.answerer.answer(name, RRType.TXT, 'bob').rcode, Rcode.REFUSED)
  const a = svc.answerer.answer(name, RRType.TXT, 'alice')
  assert.equal(a.rcode, Rcode.NOERROR)
  assert.equal(a.answers[0]?.ttl, 0)
  const strings = (a.answers[0]!.data as { strings: Buffer[] }).strings.map(String)
  const expiry = Math.floor(clock.now() / 1000) + 3600
  const username = `${expiry}:alice`
  assert.deepEqual(strings, [
    `username=${username}`,
    `password=${createHmac('sha1', secret).update(username).digest('base64')}`,
    'ttl=3600',
  ])
  assert.equal(svc.answerer.answer(name, RRType.A, 'alice').answers.length, 0)
  // Without a secret the name is an ordinary (empty) private name.
  const plain = setup(t, base).svc
  assert.equal(plain.answerer.answer(name, RRType.TXT, 'alice').answers.length, 0)
})
