// Issue 16 finding 1: DNS Push sessions and LLQs must not outlive the key that opened them. After
// `autotunnel account passwd` (a lost device) or `account remove` + `account add` (a new owner), run by the CLI in
// another process, every session and LLQ bound to the old key ends within about a second and receives nothing
// more.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import {
  type AccountJson,
  account,
  llqClient,
  pushClient,
  ServerProcess,
  sleep,
  tsigKey,
  ZONE,
} from './security-harness.js'

const srv = new ServerProcess()
/** The server notices CLI edits within 1 s (KeyRing data_version tick); allow scheduling slack on a busy host. */
const REVOKE_WITHIN_MS = 1800

before(async () => {
  await srv.addAccount('alice')
  await srv.addAccount('carol')
  await srv.start()
})
after(() => srv.cleanup())

async function lostWithin(p: { onLost(h: (why: string) => void): void }, ms: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(undefined), ms)
    p.onLost((why) => {
      clearTimeout(t)
      resolve(why)
    })
  })
}

/**
 * Opens a DNS Push session for `name` with `old`, runs `revoke` (which returns the key now in force), then updates
 * `name` with that key: the session must have been ended by the server and must have seen no change.
 */
async function pushEndsOnRevoke(
  t: { after(fn: () => void): void },
  name: string,
  old: ReturnType<typeof tsigKey>,
  revoke: () => Promise<AccountJson>,
  address: string,
): Promise<void> {
  const push = pushClient(srv, name, old)
  t.after(() => push.close())
  await push.start()
  const seen: unknown[] = []
  push.onChanges((c) => seen.push(c))
  const lost = lostWithin(push, REVOKE_WITHIN_MS + 1000)
  const inForce = await revoke()
  await sleep(REVOKE_WITHIN_MS)
  assert.equal((await srv.nsupdate(inForce, [`update add ${name} 60 AAAA ${address}`])).code, 0)
  await sleep(300)
  assert.deepEqual(seen, [], 'no change reaches the holder of the old key')
  assert.ok(await lost, 'the server ended the session')
}

test('account passwd ends a DNS Push session bound with the old key; it receives no later change', async (t) => {
  const old = tsigKey((await account(srv, ['passwd', 'alice', '--json'])) as AccountJson)
  await pushEndsOnRevoke(
    t,
    `laptop.alice.${ZONE}.`,
    old,
    async () => (await account(srv, ['passwd', 'alice', '--json'])) as AccountJson,
    'fd00::1',
  )
})

test('account remove + add (a new owner) ends the old owner’s DNS Push session', async (t) => {
  const old = tsigKey((await account(srv, ['passwd', 'carol', '--json'])) as AccountJson)
  await pushEndsOnRevoke(
    t,
    `phone.carol.${ZONE}.`,
    old,
    async () => {
      await account(srv, ['remove', 'carol'])
      return (await account(srv, ['add', 'carol', '--zone', ZONE, '--json'])) as AccountJson
    },
    'fd00::2',
  )
})

test('account passwd ends an LLQ set up with the old key: no event (signed or not) reaches its holder', async (t) => {
  const old = tsigKey((await account(srv, ['passwd', 'alice', '--json'])) as AccountJson)
  const name = `desk.alice.${ZONE}.`
  const llq = llqClient(srv, name, old)
  t.after(() => llq.close())
  await llq.start()
  const seen: unknown[] = []
  llq.onEvent((e) => seen.push(e))
  const fresh = (await account(srv, ['passwd', 'alice', '--json'])) as AccountJson
  await sleep(REVOKE_WITHIN_MS)
  assert.equal((await srv.nsupdate(fresh, [`update add ${name} 60 AAAA fd00::3`])).code, 0)
  await sleep(500)
  assert.deepEqual(seen, [])
  assert.equal(llq.rejected, 0, 'no event signed with the new key was sent to the old LLQ either')
  const r = await llq.refresh().catch(() => undefined)
  assert.ok(r === undefined || r.error !== 0, 'the LLQ is gone (NO-SUCH-LLQ) or its refresh refused')
})
