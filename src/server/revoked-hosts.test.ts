import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import { hostOfName, hostsAddedTo, RevokedHostsFile } from './revoked-hosts.js'
import { setHostRevoked } from './sso-ca-store.js'
import { rr, tempDir } from './test-helpers.js'

const D = 'alice.members.example.'

test('hostOfName: the host a name of the user domain belongs to', () => {
  const cases: [string, string | undefined][] = [
    [`laptop.${D}`, 'laptop'],
    [`_autotunnel._udp.laptop.${D}`, 'laptop'],
    [`x.y.laptop.${D}`, 'laptop'],
    [`laptop._ssh._tcp.${D}`, 'laptop'],
    [`my\\ printer._ipp._tcp.${D}`, 'my\\ printer'],
    [`_autotunnel._udp.${D}`, undefined],
    [`_ssh._tcp.${D}`, undefined],
    [`_services._dns-sd._udp.${D}`, undefined],
    [`a.laptop._ssh._tcp.${D}`, undefined],
    [`_udp.${D}`, undefined],
    [D, undefined],
    ['laptop.bob.members.example.', undefined],
    [`laptop\\.alice.members.example.`, undefined],
  ]
  for (const [name, want] of cases) assert.equal(hostOfName(name, D), want, name)
})

test('hostsAddedTo: owners and PTR targets of added records only, not deletions', () => {
  const ptr = (n: string, t: string) => rr(n, RRType.PTR, { ptrdname: t })
  const none = (n: string, type: number) => rr(n, type, null, { ttl: 0, class: RRClass.NONE })
  const any = (n: string) => rr(n, RRType.ANY, null, { ttl: 0, class: RRClass.ANY })
  assert.deepEqual(
    [
      ...hostsAddedTo(
        [
          rr(`A.${D}`, RRType.AAAA, { address: 'fd00::1' }),
          ptr(`_autotunnel._udp.${D}`, `_autotunnel._udp.B.${D}`),
          ptr(`_ssh._tcp.${D}`, `c._ssh._tcp.${D}`),
          ptr(`_services._dns-sd._udp.${D}`, `_ssh._tcp.${D}`),
          any(`gone.${D}`),
          none(`gone2.${D}`, RRType.AAAA),
          rr('elsewhere.bob.members.example.', RRType.AAAA, { address: 'fd00::1' }),
        ],
        D,
      ),
    ].sort(),
    ['a', 'b', 'c'],
  )
})

test('RevokedHostsFile: reads the list at most once a second per account; forget() reads again', (t) => {
  const { dir, cleanup } = tempDir()
  t.after(cleanup)
  let now = 0
  const list = new RevokedHostsFile(dir, () => now)
  const has = (user: string, host: string) => list.of(user).has(host)
  assert.equal(has('alice', 'laptop'), false, 'no file: nothing revoked')
  setHostRevoked(dir, 'alice', 'laptop')
  assert.equal(has('alice', 'laptop'), false, 'cached for a second')
  now = 999
  assert.equal(has('alice', 'laptop'), false)
  now = 1000
  assert.equal(has('Alice', 'laptop'), true, 'read again; the account case-insensitive')
  assert.equal(has('bob', 'laptop'), false, 'per account')
  setHostRevoked(dir, 'alice', 'laptop', false)
  list.forget('alice')
  assert.equal(has('alice', 'laptop'), false, 'forget: read at once')
})
