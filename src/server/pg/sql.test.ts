import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RRType } from '../../dns/wire/rr-table.js'
import { txtZoneRR } from '../test-helpers.js'
import type { ZoneRR } from '../zone-index.js'
import type { SqlOp } from '../zone-tx.js'
import { commitParamsOf } from './sql.js'

const txt = txtZoneRR
const put = (rr: ZoneRR): SqlOp => ({ kind: 'put', rr, expiresAtMs: null })
const del = (rr: ZoneRR): SqlOp => ({ kind: 'del', rr, expiresAtMs: null })
const N = 'h.alice.z.'

test('commitParamsOf: a clear drops the operations before it on its RRset and keeps those after it', () => {
  const a = txt(N, 'a')
  const b = txt(N, 'b')
  const other = { ...txt(N, 'x'), type: RRType.AAAA }
  const r = commitParamsOf([put(a), put(other), del(b), { kind: 'clear', name: N, type: RRType.TXT }, put(b)], 'n')
  assert.deepEqual(r.params[0], [], 'no row deletion left (the clear deletes b unless written after it)')
  assert.deepEqual(r.params[4], [N, N], 'AAAA and b written')
  assert.deepEqual(r.params[5], [RRType.AAAA, RRType.TXT])
  assert.deepEqual(r.clears, [[N], [RRType.TXT]])
  assert.deepEqual(r.clearedNames, [])
  assert.deepEqual(r.touched.map(([n, t]) => `${n}/${t}`).sort(), [`${N}/${RRType.TXT}`, `${N}/${RRType.AAAA}`].sort())
})

test('commitParamsOf: a clear of a whole name (ANY) supersedes its RRset clears and names the name', () => {
  const r = commitParamsOf(
    [
      { kind: 'clear', name: N, type: RRType.TXT },
      put(txt(N, 'a')),
      { kind: 'clear', name: N, type: RRType.ANY },
      { kind: 'clear', name: N, type: RRType.TXT },
      put(txt(N, 'c')),
    ],
    'n',
  )
  assert.deepEqual(r.clears, [[N], [RRType.ANY]])
  assert.deepEqual(r.clearedNames, [N])
  assert.deepEqual(r.params[4], [N])
  assert.deepEqual(r.touched, [[N, RRType.TXT]], 'only the RRset written after the clear')
})

test('commitParamsOf: a write deletes when it removes a record or clears an RRset or a name, not when it only puts', () => {
  const a = txt(N, 'a')
  assert.equal(commitParamsOf([put(a)], 'n').deletes, false)
  assert.equal(commitParamsOf([del(a)], 'n').deletes, true)
  assert.equal(commitParamsOf([{ kind: 'clear', name: N, type: RRType.TXT }, put(a)], 'n').deletes, true)
  assert.equal(commitParamsOf([{ kind: 'clear', name: N, type: RRType.ANY }], 'n').deletes, true)
  // A deletion superseded by a put of the same record in the batch is a put.
  assert.equal(commitParamsOf([del(a), put(a)], 'n').deletes, false)
})
