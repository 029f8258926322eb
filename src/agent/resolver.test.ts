import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { test } from 'node:test'
import { promisify } from 'node:util'
import fc from 'fast-check'
import { queryMessage } from '../dns/client/query.js'
import { Opcode, Rcode } from '../dns/wire/header.js'
import { decodeMessage, encodeMessage } from '../dns/wire/message.js'
import { RRType } from '../dns/wire/rr-table.js'
import { UdpSocket } from '../io/datagram.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { Forwarder } from './forwarder.js'
import { LocalResolver, parseResolverAddress, RESOLVER_DEFAULT, RESOLVER_TTL_SEC } from './resolver.js'

failOnLeakedResources()

const D = 'alice.members.example'
const HOSTS: Record<string, string> = { desktop: 'fd12:3456:789a:1::1', laptop: 'fd12:3456:789a:2::2' }
const make = (): LocalResolver => new LocalResolver({ log: nullLogger }, { domain: D, ulaOf: (h) => HOSTS[h] })

function ask(r: LocalResolver, name: string, type: number) {
  const out = r.answer(encodeMessage(queryMessage(name, type)))
  assert.ok(out)
  return decodeMessage(out)
}

test('answers table: names of the user, short names, NODATA, NXDOMAIN, REFUSED', () => {
  const r = make()
  const cases: [string, number, number, string[]][] = [
    [`desktop.${D}`, RRType.AAAA, Rcode.NOERROR, [HOSTS.desktop as string]],
    [`DeskTop.${D.toUpperCase()}.`, RRType.AAAA, Rcode.NOERROR, [HOSTS.desktop as string]],
    ['laptop', RRType.AAAA, Rcode.NOERROR, [HOSTS.laptop as string]],
    [`desktop.${D}`, RRType.A, Rcode.NOERROR, []],
    [`desktop.${D}`, RRType.MX, Rcode.NOERROR, []],
    [D, RRType.AAAA, Rcode.NOERROR, []],
    [`nosuch.${D}`, RRType.AAAA, Rcode.NXDOMAIN, []],
    ['nosuch', RRType.AAAA, Rcode.NXDOMAIN, []],
    ['example.org', RRType.AAAA, Rcode.REFUSED, []],
    [`desktop.bob.members.example`, RRType.AAAA, Rcode.REFUSED, []],
    [`_autotunnel._udp.desktop.${D}`, RRType.SRV, Rcode.REFUSED, []],
  ]
  for (const [name, type, rcode, addrs] of cases) {
    const m = ask(r, name, type)
    assert.equal(m.rcode, rcode, `${name} ${type}`)
    assert.deepEqual(
      m.answers.map((a) => (a.data as { address: string }).address),
      addrs,
      `${name} ${type}`,
    )
    if (addrs.length) {
      assert.equal(m.answers[0]?.ttl, RESOLVER_TTL_SEC)
      assert.equal(m.aa, true)
    }
  }
  assert.equal(r.counters.answered, 3)
  assert.equal(r.counters.refused, 3)
  assert.equal(r.counters.nxdomain, 2)
})

test('opcodes other than QUERY: NOTIMP; responses and garbage: dropped or FORMERR, never a throw', () => {
  const r = make()
  const upd = r.answer(encodeMessage({ ...queryMessage(`desktop.${D}`, RRType.SOA), opcode: Opcode.UPDATE }))
  assert.equal(decodeMessage(upd as Buffer).rcode, Rcode.NOTIMP)
  assert.equal(r.answer(encodeMessage({ ...queryMessage(`desktop.${D}`, RRType.AAAA), qr: true })), undefined)
  assert.equal(r.answer(Buffer.from([1, 2, 3])), undefined)
  const bad = r.answer(Buffer.from('abcd0100000100000000000007', 'hex'))
  assert.equal(decodeMessage(bad as Buffer).rcode, Rcode.FORMERR)
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
      const out = r.answer(Buffer.from(b))
      if (out) decodeMessage(out)
    }),
    { numRuns: 3000 },
  )
  assert.ok(r.counters.dropped >= 2)
})

test('dig over UDP and TCP against the listening resolver', async (t) => {
  const r = make()
  const { port } = await r.listen(new UdpSocket(), '127.0.0.1', 0)
  t.after(() => r.close())
  const run = promisify(execFile)
  for (const extra of [[], ['+tcp']]) {
    const { stdout } = await run('dig', [
      '@127.0.0.1',
      '-p',
      String(port),
      '+short',
      '+time=2',
      '+tries=1',
      ...extra,
      'desktop',
      'AAAA',
    ])
    assert.equal(stdout.trim(), HOSTS.desktop, `dig ${extra.join(' ')}`)
    const nx = await run('dig', [
      '@127.0.0.1',
      '-p',
      String(port),
      '+time=2',
      '+tries=1',
      ...extra,
      `nope.${D}`,
      'AAAA',
    ])
    assert.match(nx.stdout, /status: NXDOMAIN/)
  }
})

test('parseResolverAddress', () => {
  assert.deepEqual(parseResolverAddress('127.0.0.53:53'), { address: '127.0.0.53', port: 53 })
  assert.deepEqual(parseResolverAddress('127.0.0.1'), { address: '127.0.0.1', port: 53 })
  assert.deepEqual(parseResolverAddress('[::1]:5300'), { address: '::1', port: 5300 })
  assert.throws(() => parseResolverAddress('x:99999'), RangeError)
})

test('the default address is port 53 of a loopback address of its own, not the mDNS port (issue 13 finding 5)', () => {
  const a = parseResolverAddress(RESOLVER_DEFAULT)
  assert.equal(a.port, 53, 'resolv.conf has no port: a resolver it names listens on 53')
  assert.notEqual(a.port, 5353)
  assert.match(a.address, /^127\./)
  assert.ok(!['127.0.0.1', '127.0.0.53', '127.0.0.54'].includes(a.address), 'not dnsmasq/BIND or resolved stubs')
})

test('names outside the domain are forwarded to the upstreams (UDP and TCP); SERVFAIL when none answers', async (t) => {
  const run = promisify(execFile)
  // The upstream: a resolver for another domain (a LAN's), on a random loopback port.
  const lan = new LocalResolver(
    { log: nullLogger },
    { domain: 'lan.example', ulaOf: (h) => (h === 'printer' ? 'fd99::9' : undefined) },
  )
  const up = await lan.listen(new UdpSocket(), '127.0.0.1', 0)
  t.after(() => lan.close())
  const upstreams = [{ address: '127.0.0.1', port: up.port }]
  const r = new LocalResolver(
    { log: nullLogger },
    { domain: D, ulaOf: (h) => HOSTS[h], forwarder: new Forwarder({ upstreams: () => upstreams, timeoutMs: 300 }) },
  )
  const { port } = await r.listen(new UdpSocket(), '127.0.0.1', 0)
  t.after(() => r.close())
  const dig = async (name: string, extra: string[] = []) =>
    (await run('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...extra, name, 'AAAA'])).stdout
  for (const extra of [[], ['+tcp']]) {
    assert.match(await dig('printer.lan.example', extra), /IN\s+AAAA\s+fd99::9/, `forwarded ${extra}`)
    assert.match(await dig('printer', extra), /IN\s+AAAA\s+fd99::9/, 'an unknown short name goes upstream too')
    assert.match(await dig('desktop', extra), new RegExp(`IN\\s+AAAA\\s+${HOSTS.desktop}`), 'ours stay ours')
    assert.match(await dig(`nosuch.${D}`, extra), /status: NXDOMAIN/, 'never forwarded: our domain')
  }
  assert.equal(r.counters.forwarded, 4)
  assert.equal(lan.counters.queries, 4)
  upstreams.splice(0, 1, { address: '127.0.0.1', port: 9 })
  assert.match(await dig('printer.lan.example'), /status: SERVFAIL/)
  assert.equal(r.counters.servfail, 1)
})
