// Issue 16 finding 9: account enumeration. Without the key, a client gets the same answers whether an account
// exists or not: the user's domain, names below it, the discovery SRV records and a TSIG with a wrong secret.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { ServerProcess, ZONE } from './security-harness.js'

const srv = new ServerProcess()

before(async () => {
  await srv.addAccount('alice')
  await srv.start()
})
after(() => srv.cleanup())

/** dig's verdict, without IDs, times, sizes and the name asked: what tells two answers apart. */
async function verdict(args: string[], user: string): Promise<string> {
  const r = await srv.dig(args)
  return (r.stdout + r.stderr)
    .split('\n')
    .filter((l) => /status:|flags:|IN\s|TSIG|BAD|tsig/i.test(l) && !/^;; (Query time|WHEN|MSG SIZE|SERVER)/.test(l))
    .map((l) =>
      l
        .replace(/id: \d+/, '')
        .replaceAll(user, 'USER')
        .replace(/\s+/g, ' ')
        // The TSIG line's time signed and original ID (the random message ID) differ from query to query.
        .replace(/(TSIG \S+) \d+ (\d+) (\d+) \d+/, '$1 TIME $2 $3 ORIGID'),
    )
    .join('\n')
}

for (const [what, args] of [
  ['the user domain (A)', (u: string) => [`${u}.${ZONE}.`, 'A']],
  ['a name below it', (u: string) => [`laptop.${u}.${ZONE}.`, 'AAAA']],
  ['the update SRV', (u: string) => [`_dns-update._udp.${u}.${ZONE}.`, 'SRV']],
  ['the push SRV', (u: string) => [`_dns-push-tls._tcp.${u}.${ZONE}.`, 'SRV']],
  ['_udp empty non-terminal', (u: string) => [`_udp.${u}.${ZONE}.`, 'A']],
  [
    'a query signed with the user’s key name and a wrong secret',
    (u: string) => ['-y', `hmac-sha256:${u}.${ZONE}:${Buffer.alloc(32, 7).toString('base64')}`, `${u}.${ZONE}.`, 'SOA'],
  ],
] as const) {
  test(`unsigned: ${what} looks the same for alice (exists) and nobody`, async () => {
    const a = await verdict([...args('alice')], 'alice')
    const b = await verdict([...args('nobody')], 'nobody')
    assert.equal(a, b)
  })
}
