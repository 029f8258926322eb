// Watchers sharing one DNS Push session (src/dns/client/push-session.ts) against the real `autotunnel server`: many
// SUBSCRIBEs on one DSO session (RFC 8765 section 6.2), each PUSH record delivered to the watchers of its name and
// type only, two watchers of one question on one server subscription, the session closed with its last watcher, and
// every watcher back (on one new session) after a server restart.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { PushClient, PushSessionPool } from '../../src/dns/client/push.js'
import { type WatchEvent, Watcher, type WatcherOptions } from '../../src/dns/client/watcher.js'
import { signMessage } from '../../src/dns/tsig.js'
import type { Message } from '../../src/dns/wire/message.js'
import { type AAAAData, RRType } from '../../src/dns/wire/rr-table.js'
import { type AccountJson, NotifyServer, tsigKey, waitFor, watcherOptions, ZONE } from './notify-harness.js'

const srv = new NotifyServer([])
let alice: AccountJson

before(async () => {
  alice = await srv.addAccount('alice')
  await srv.start()
})
after(() => srv.cleanup())

const suffix = Math.random().toString(36).slice(2, 8)
const hostName = (h: string): string => `${h}-${suffix}.alice.${ZONE}.`
const addrs = (rrs: readonly { data: unknown }[]): string[] => rrs.map((r) => (r.data as AAAAData).address).sort()

function opts(name: string, pool: PushSessionPool): WatcherOptions {
  return watcherOptions(srv, alice, name, { mechanisms: ['push'], pushSessions: pool })
}

/** Resolves with the RRset after `w` saw `addr` added. */
function sees(w: Watcher, addr: string, ms = 5000): Promise<string[]> {
  return waitFor<WatchEvent, string[]>(
    (h) => w.onEvent(h),
    (e) => (e.kind === 'add' && addrs(e.records).includes(addr) ? addrs(e.rrset) : undefined),
    ms,
    `add of ${addr}`,
  )
}

async function add(name: string, addr: string): Promise<void> {
  const r = await srv.nsupdate(alice, [`update add ${name} 60 AAAA ${addr}`])
  assert.equal(r.code, 0, r.stderr)
}

const sessions = (): Promise<number> => srv.metric('autotunnel_push_sessions')

/**
 * The server's session count once the sessions of earlier tests have ended: their watchers are closed by t.after
 * before the next test starts, but the server sees each TLS close a moment later, so a count read at once may
 * still include one (a base of 1 where the test's own session then ends at 0).
 */
async function quietBase(): Promise<number> {
  for (let i = 0; i < 50 && (await sessions()) !== 0; i++) await new Promise((r) => setTimeout(r, 100))
  return sessions()
}

test('watchers with one pool share one DSO session; records go only to the watchers of their name', async (t) => {
  const pool = new PushSessionPool()
  const one = hostName('one')
  const two = hostName('two')
  const base = await quietBase()
  const a = new Watcher({}, opts(one, pool))
  const b = new Watcher({}, opts(two, pool))
  const c = new Watcher({}, opts(one, pool))
  t.after(() => Promise.all([a.close(), b.close(), c.close()]))
  assert.deepEqual(await Promise.all([a.start(), b.start(), c.start()]), ['push', 'push', 'push'])
  assert.equal(pool.size, 1, 'one session in the pool')
  assert.equal(await sessions(), base + 1, 'one DSO session on the server for three watchers')

  const bEvents: WatchEvent[] = []
  b.onEvent((e) => bEvents.push(e))
  const [seenA, seenC] = [sees(a, 'fd00::1'), sees(c, 'fd00::1')]
  await add(one, 'fd00::1')
  assert.deepEqual(await seenA, ['fd00::1'])
  assert.deepEqual(await seenC, ['fd00::1'])
  const seenB = sees(b, 'fd00::2')
  await add(two, 'fd00::2')
  assert.deepEqual(await seenB, ['fd00::2'])
  assert.deepEqual(
    bEvents.map((e) => addrs(e.records)),
    [['fd00::2']],
    'b never saw a record of the other name',
  )
  assert.deepEqual(addrs(a.rrset), ['fd00::1'])

  // a leaves: c, on the same question, keeps the server subscription and its events.
  await a.close()
  const seenC3 = sees(c, 'fd00::3')
  await add(one, 'fd00::3')
  assert.deepEqual(await seenC3, ['fd00::1', 'fd00::3'])
  await c.close()
  const seenB4 = sees(b, 'fd00::4')
  await add(two, 'fd00::4')
  assert.deepEqual(await seenB4, ['fd00::2', 'fd00::4'])
  assert.equal(await sessions(), base + 1)

  // The last watcher closes the session.
  await b.close()
  assert.equal(pool.size, 0)
  for (let i = 0; i < 50 && (await sessions()) !== base; i++) await new Promise((r) => setTimeout(r, 100))
  assert.equal(await sessions(), base, 'the server saw the session end')
})

test('watchers sharing a session all come back, on one new session, after a server restart', async (t) => {
  const pool = new PushSessionPool()
  const names = [hostName('r1'), hostName('r2'), hostName('r3')]
  const ws = names.map((n) => new Watcher({}, opts(n, pool)))
  t.after(() => Promise.all(ws.map((w) => w.close())))
  for (const w of ws) assert.equal(await w.start(), 'push')
  await srv.stop()
  await srv.start()
  for (const [i, w] of ws.entries()) {
    const seen = sees(w, `fd00::9${i}`, 10_000)
    await add(names[i]!, `fd00::9${i}`)
    assert.deepEqual(await seen, [`fd00::9${i}`])
    assert.equal(w.mechanism, 'push')
  }
  assert.equal(pool.size, 1)
  assert.equal(await sessions(), 1, 'one session after the restart, for three watchers')
})

test('a subscription closed while its SUBSCRIBE is on the way is unsubscribed when it lands (no session left behind)', async () => {
  const pool = new PushSessionPool()
  const base = await quietBase()
  const o = opts(hostName('early'), pool)
  const sign = (m: Message): Buffer => signMessage(m, tsigKey(alice)).wire
  const c = new PushClient(
    { host: '127.0.0.1', port: srv.tlsPort, tls: { rejectUnauthorized: false } },
    { name: o.name, type: RRType.AAAA, sign, authId: tsigKey(alice).name, authName: `alice.${ZONE}.` },
    { sessions: pool },
  )
  const started = c.start()
  c.close()
  assert.deepEqual(await started, [])
  assert.equal(pool.size, 0, 'the session closed with its only subscription')
  for (let i = 0; i < 50 && (await sessions()) !== base; i++) await new Promise((r) => setTimeout(r, 100))
  assert.equal(await sessions(), base)
})

test('renew(): watchers opened after it get a new session; the old one ends with its last watcher', async (t) => {
  const pool = new PushSessionPool()
  const base = await quietBase()
  const old = new Watcher({}, opts(hostName('renew-a'), pool))
  t.after(() => old.close())
  assert.equal(await old.start(), 'push')
  pool.renew()
  const fresh = new Watcher({}, opts(hostName('renew-b'), pool))
  t.after(() => fresh.close())
  assert.equal(await fresh.start(), 'push')
  assert.equal(await sessions(), base + 2, 'a second session after renew()')
  await old.close()
  for (let i = 0; i < 50 && (await sessions()) !== base + 1; i++) await new Promise((r) => setTimeout(r, 100))
  assert.equal(await sessions(), base + 1, 'the old session ended with its watcher; the new one stays')
  const seen = sees(fresh, 'fd00::7')
  await add(hostName('renew-b'), 'fd00::7')
  assert.deepEqual(await seen, ['fd00::7'])
})
