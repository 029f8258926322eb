import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { decodeUpdateLease } from './lease.js'
import {
  addRR,
  classifyPrereq,
  classifyUpdate,
  deleteName,
  deleteRR,
  deleteRRset,
  nameInUse,
  nameNotInUse,
  rrsetAbsent,
  rrsetExists,
  rrsetExistsValue,
  updateMessage,
} from './update.js'
import { Opcode, Rcode } from './wire/header.js'
import { decodeMessage, encodeMessage } from './wire/message.js'
import { type RR, RRClass, RRType } from './wire/rr-table.js'

failOnLeakedResources()

const Z = 'members.example.'
const aaaa: RR = { name: `alice.${Z}`, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: 'fdaa::1' } }

test('builders produce the RFC 2136 2.4 / 2.5 forms and survive the wire', () => {
  const m = updateMessage({
    id: 1,
    zone: Z,
    prereqs: [
      rrsetExists(`alice.${Z}`, RRType.AAAA),
      rrsetExistsValue(aaaa),
      rrsetAbsent(`bob.${Z}`, RRType.A),
      nameInUse(`alice.${Z}`),
      nameNotInUse(`carol.${Z}`),
    ],
    updates: [deleteRRset(`alice.${Z}`, RRType.AAAA), deleteName(`old.${Z}`), deleteRR(aaaa), addRR(aaaa)],
    leaseSec: 3600,
  })
  const back = decodeMessage(encodeMessage(m))
  assert.equal(back.opcode, Opcode.UPDATE)
  assert.deepEqual(back.questions, [{ name: Z, type: RRType.SOA, class: RRClass.IN }])
  assert.deepEqual(decodeUpdateLease(back.edns!.options[0]!.data), { leaseSec: 3600 })
  assert.deepEqual(
    back.answers.map((r) => classifyPrereq(r)),
    [
      { kind: 'rrsetExists', name: `alice.${Z}`, type: RRType.AAAA },
      { kind: 'rrsetExistsValue', rr: { ...aaaa, ttl: 0 } },
      { kind: 'rrsetAbsent', name: `bob.${Z}`, type: RRType.A },
      { kind: 'nameInUse', name: `alice.${Z}` },
      { kind: 'nameNotInUse', name: `carol.${Z}` },
    ],
  )
  assert.deepEqual(
    back.authorities.map((r) => classifyUpdate(r)),
    [
      { kind: 'deleteRRset', name: `alice.${Z}`, type: RRType.AAAA },
      { kind: 'deleteName', name: `old.${Z}` },
      { kind: 'deleteRR', rr: { ...aaaa, ttl: 0 } },
      { kind: 'add', rr: aaaa },
    ],
  )
})

test('malformed prerequisites and updates are FORMERR (RFC 2136 3.2.4, 3.4.1.3)', () => {
  const bad = { rcode: Rcode.FORMERR }
  assert.deepEqual(classifyPrereq({ ...rrsetExists(Z, RRType.A), ttl: 5 }), bad)
  assert.deepEqual(classifyPrereq({ ...rrsetExists(Z, RRType.A), data: { address: '192.0.2.1' } }), bad)
  assert.deepEqual(classifyPrereq({ ...aaaa, ttl: 0, class: RRClass.CH }), bad)
  assert.deepEqual(classifyUpdate({ ...aaaa, type: RRType.ANY }), bad)
  assert.deepEqual(classifyUpdate({ ...aaaa, data: null }), bad)
  assert.deepEqual(classifyUpdate({ ...deleteRRset(Z, RRType.A), ttl: 1 }), bad)
  assert.deepEqual(classifyUpdate({ ...deleteRR(aaaa), type: RRType.ANY }), bad)
  assert.deepEqual(classifyUpdate({ ...aaaa, type: RRType.AXFR }), bad)
  assert.deepEqual(classifyUpdate({ ...aaaa, class: RRClass.HS }), bad)
})
