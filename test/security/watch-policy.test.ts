// Issue 16 finding 3: anonymous watches. Nobody may watch, without the user's key, a name that can only ever be
// private (anything under a label that could be an account, whether or not the account exists yet), and watches
// are bounded per key, per source and in total, so an anonymous flood cannot lock a user out.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { RRType } from '../../src/dns/wire/rr-table.js'
import { type AccountJson, RawSession, ServerProcess, signedQuery, sleep, tsigKey, ZONE } from './security-harness.js'

const srv = new ServerProcess()
let alice: AccountJson

before(async () => {
  alice = await srv.addAccount('alice')
  await srv.start(['--watch-limit-total', '2000', '--watch-limit-client', '5000'])
})
after(() => srv.cleanup())

test('an anonymous SUBSCRIBE to a name under a user that does not exist yet is refused and sees nothing later', async (t) => {
  const s = await RawSession.open(srv)
  t.after(() => s.close())
  const name = `secret.dave.${ZONE}.`
  const rcode = await s.subscribe(name, RRType.TXT)
  const dave = await srv.addAccount('dave')
  await sleep(1500)
  assert.equal((await srv.nsupdate(dave, [`update add ${name} 60 TXT "the-secret"`])).code, 0)
  await sleep(500)
  assert.ok(
    !s.pushes.some((p) => p.includes(Buffer.from('the-secret'))),
    'dave’s private TXT reached an anonymous watcher',
  )
  assert.equal(rcode, 5, 'REFUSED')
})

test('an anonymous flood of SUBSCRIBEs cannot fill the server: alice still subscribes', async (t) => {
  const flood: RawSession[] = []
  t.after(() => {
    for (const f of flood) f.close()
  })
  // Two sources, each filling the whole total with public names.
  for (const localAddress of ['127.0.0.2', '127.0.0.3']) {
    const f = await RawSession.open(srv, { localAddress })
    flood.push(f)
    await f.subscribeMany(Array.from({ length: 2000 }, (_, i) => `_f${i}-${localAddress}._tcp.${ZONE}.`))
  }
  const s = await RawSession.open(srv)
  t.after(() => s.close())
  assert.equal(await s.dns(signedQuery(`alice.${ZONE}.`, RRType.SOA, tsigKey(alice))), 0)
  assert.equal(await s.subscribe(`laptop.alice.${ZONE}.`), 0, 'alice’s SUBSCRIBE is accepted')
})

test('one key cannot hold more than the per-key limit of watches (default 1000)', async (t) => {
  const s = await RawSession.open(srv, { localAddress: '127.0.0.4' })
  t.after(() => s.close())
  assert.equal(await s.dns(signedQuery(`alice.${ZONE}.`, RRType.SOA, tsigKey(alice))), 0)
  const rcodes = await s.subscribeMany(Array.from({ length: 1001 }, (_, i) => `h${i}.alice.${ZONE}.`))
  assert.equal(rcodes.filter((r) => r === 0).length, 1000)
  assert.equal(rcodes[1000], 5, 'the 1001st is REFUSED')
})
