// Issue 16 finding 8: escaped dots. `x\.bob.members.example.` is ONE label ("x.bob") directly under the apex, not a
// name in bob's subdomain; the update policy works on wire-format labels, so bob may not write it.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { type AccountJson, ServerProcess, ZONE } from './security-harness.js'

const srv = new ServerProcess()
let bob: AccountJson

before(async () => {
  bob = await srv.addAccount('bob')
  await srv.start()
})
after(() => srv.cleanup())

test('bob’s UPDATE of x\\.bob.ZONE (one label under the apex) is REFUSED', async () => {
  const r = await srv.nsupdate(bob, [`update add x\\.bob.${ZONE}. 60 TXT "squat"`])
  assert.notEqual(r.code, 0)
  assert.match(r.stdout + r.stderr, /REFUSED/)
  const d = await srv.dig([`x\\.bob.${ZONE}.`, 'TXT'])
  assert.doesNotMatch(d.stdout, /squat/)
})

test('bob’s own names still work, including a label with an escaped dot below his domain', async () => {
  assert.equal((await srv.nsupdate(bob, [`update add a\\.b.bob.${ZONE}. 60 TXT "mine"`])).code, 0)
  assert.equal((await srv.nsupdate(bob, [`update add host.bob.${ZONE}. 60 TXT "mine"`])).code, 0)
})
