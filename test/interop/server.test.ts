// The DNS service against real peers: nsupdate and dig (BIND 9.18), kdig (Knot) over TLS, python3-dnspython
// for the update-lease option, all driving the real `autotunnel server` process on 127.0.0.1.
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { BIN, run, ServerProcess, tsigArg, ZONE } from './server-harness.js'

const BIN_PATH = (): string => BIN

const Z = `${ZONE}.`

function answers(out: string): string[] {
  return out
    .split('\n')
    .map((l) => l.trim().replace(/\s+/g, ' '))
    .filter((l) => l && !l.startsWith(';'))
}

test('nsupdate (hmac-sha256 and hmac-md5) adds and deletes AAAA, SRV, A and TXT; dig -y reads them', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  const bob = await srv.addAccount('bob', { algorithm: 'hmac-md5', password: 'bob secret words' })
  await srv.start()
  for (const [acct, user] of [
    [alice, 'alice'],
    [bob, 'bob'],
  ] as const) {
    const key = tsigArg(acct)
    const h = `mac.${user}.${Z}`
    const add = await srv.nsupdate(key, [
      `update add ${h} 60 AAAA fd00::1`,
      `update add _autotunnel._udp.${h} 60 SRV 0 0 4500 ${h}`,
      `update add ${h} 60 A 192.0.2.1`,
      `update add ${h} 60 TXT "hello world"`,
    ])
    assert.equal(add.code, 0, add.stderr)
    const read = await srv.dig([
      '-y',
      key,
      '+noall',
      '+answer',
      h,
      'AAAA',
      h,
      'A',
      h,
      'TXT',
      `_autotunnel._udp.${h}`,
      'SRV',
    ])
    assert.deepEqual(answers(read.stdout), [
      `${h} 60 IN AAAA fd00::1`,
      `${h} 60 IN A 192.0.2.1`,
      `${h} 60 IN TXT "hello world"`,
      `_autotunnel._udp.${h} 60 IN SRV 0 0 4500 ${h}`,
    ])
    const del = await srv.nsupdate(key, [
      `update delete ${h} AAAA fd00::1`,
      `update delete _autotunnel._udp.${h} SRV`,
      `update delete ${h} A`,
      `update delete ${h} TXT "hello world"`,
    ])
    assert.equal(del.code, 0, del.stderr)
    const gone = await srv.dig(['-y', key, h, 'AAAA'])
    assert.match(gone.stdout, /status: NXDOMAIN/)
  }
  // The response to a signed query is signed and verified by dig (it fails loudly otherwise).
  const signed = await srv.dig(['-y', tsigArg(alice), `mac.alice.${Z}`, 'A'])
  assert.match(signed.stdout, /TSIG\s+hmac-sha256\. \d+ 300 32 \S+ \d+ NOERROR 0/)
})

test('privacy and authorization: unsigned private read REFUSED, cross-user update REFUSED, bad MAC and unknown key NOTAUTH', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  const bob = await srv.addAccount('bob')
  await srv.start()
  assert.equal((await srv.nsupdate(tsigArg(alice), [`update add mac.alice.${Z} 60 AAAA fd00::1`])).code, 0)
  assert.match((await srv.dig([`mac.alice.${Z}`, 'AAAA'])).stdout, /status: REFUSED/)
  assert.match((await srv.dig(['-y', tsigArg(bob), `mac.alice.${Z}`, 'AAAA'])).stdout, /status: REFUSED/)
  assert.match((await srv.dig(['-y', tsigArg(alice), `mac.alice.${Z}`, 'AAAA'])).stdout, /status: NOERROR/)
  // Apex and discovery records are public.
  assert.match((await srv.dig([Z, 'SOA'])).stdout, /status: NOERROR.*\n.*flags: qr aa/)
  const disc = await srv.dig(['+noall', '+answer', `_dnsupdate-tls._udp.alice.${Z}`, 'SRV'])
  assert.deepEqual(answers(disc.stdout), [`_dnsupdate-tls._udp.alice.${Z} 300 IN SRV 0 0 ${srv.ports.tls} ns.${Z}`])
  const cross = await srv.nsupdate(tsigArg(alice), [`update add x.bob.${Z} 60 A 192.0.2.9`])
  assert.notEqual(cross.code, 0)
  assert.match(cross.stderr, /REFUSED/)
  const wrong = await srv.nsupdate(`hmac-sha256:alice.${Z}:${Buffer.alloc(32, 7).toString('base64')}`, [
    `update add x.alice.${Z} 60 A 192.0.2.9`,
  ])
  assert.match(wrong.stderr, /NOTAUTH\(BADSIG\)/)
  // A key named like an account that does not exist fails as a wrong secret would (no account enumeration).
  const unknown = await srv.nsupdate(`hmac-sha256:carol.${Z}:${Buffer.alloc(32, 7).toString('base64')}`, [
    `update add x.carol.${Z} 60 A 192.0.2.9`,
  ])
  assert.match(unknown.stderr, /NOTAUTH\(BADSIG\)/)
  const foreign = await srv.nsupdate(`hmac-sha256:some.key.example:${Buffer.alloc(32, 7).toString('base64')}`, [
    `update add x.carol.${Z} 60 A 192.0.2.9`,
  ])
  assert.match(foreign.stderr, /NOTAUTH\(BADKEY\)/)
  const unsigned = await run(
    'nsupdate',
    ['-t', '5'],
    `server 127.0.0.1 ${srv.ports.dns}\nzone ${ZONE}\nupdate add x.alice.${Z} 60 A 192.0.2.9\nsend\n`,
  )
  assert.match(unsigned.stderr, /REFUSED/)
  // An account added while the server runs is usable at once.
  const carol = await srv.addAccount('carol')
  assert.equal((await srv.nsupdate(tsigArg(carol), [`update add x.carol.${Z} 60 A 192.0.2.9`])).code, 0)
})

const LEASE_PY = `
import os, struct, sys, time, dns.message, dns.query, dns.update, dns.tsigkeyring, dns.tsig, dns.edns, dns.rcode
port, keyname, secret, alg, want = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
kr = dns.tsigkeyring.from_text({keyname: secret})
up = dns.update.UpdateMessage('${ZONE}', keyring=kr, keyname=keyname, keyalgorithm=alg)
up.use_edns(edns=0, payload=1232, options=[dns.edns.GenericOption(2, struct.pack('!I', want))])
up.add('leased.alice', 60, 'AAAA', 'fd00::99')
r = dns.query.udp(up, '127.0.0.1', port=port, timeout=3)
opts = [(o.otype, o.to_wire().hex()) for o in r.options]
print(dns.rcode.to_text(r.rcode()), r.had_tsig, ','.join('%d:%s' % o for o in opts), time.time())
`

test('update lease (RFC 9664) via dnspython: clamped, echoed in the signed response, record gone on time', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  await srv.start(['--lease-min', '2', '--lease-max', '5'], { tls: false })
  const leaseUpdate = (leaseSec: number) =>
    run('/usr/bin/python3', [
      '-c',
      LEASE_PY,
      String(srv.ports.dns),
      alice.keyName,
      alice.secret,
      'hmac-sha256',
      String(leaseSec),
    ])
  const r = await leaseUpdate(3600)
  assert.equal(r.code, 0, r.stderr)
  const [rcode, hadTsig, opts, sentAt] = r.stdout.trim().split(' ')
  assert.equal(rcode, 'NOERROR')
  assert.equal(hadTsig, 'True')
  assert.equal(opts, `2:${(5).toString(16).padStart(8, '0')}`, 'lease clamped to --lease-max and echoed')
  const t0 = Number(sentAt) * 1000
  const h = `leased.alice.${Z}`
  let goneAt = 0
  while (Date.now() - t0 < 8000) {
    const q = await srv.dig(['-y', tsigArg(alice), '+short', h, 'AAAA'])
    if (q.stdout.trim() === '') {
      goneAt = Date.now()
      break
    }
    await new Promise((res) => setTimeout(res, 100))
  }
  assert.ok(goneAt > 0, 'record removed')
  const after = goneAt - t0
  assert.ok(after >= 4800 && after <= 6000, `removed ${after} ms after the update, lease 5 s`)
  // Asking for less than the minimum gets the minimum.
  const r2 = await leaseUpdate(1)
  assert.equal(r2.stdout.trim().split(' ')[2], `2:${(2).toString(16).padStart(8, '0')}`)
})

test('kdig +tls over DoT (self-signed certificate, fingerprint printed), metrics, clean SIGTERM', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  await srv.start([], { metrics: true })
  assert.equal((await srv.nsupdate(tsigArg(alice), [`update add mac.alice.${Z} 60 AAAA fd00::7`])).code, 0)
  const k = await run('kdig', [
    '@127.0.0.1',
    '-p',
    String(srv.ports.tls),
    '+tls',
    '-y',
    tsigArg(alice),
    `mac.alice.${Z}`,
    'AAAA',
  ])
  assert.equal(k.code, 0, k.stderr)
  assert.match(k.stdout, /TLS session/)
  assert.match(k.stdout, /mac\.alice\.members\.example\.\s+60\s+IN\s+AAAA\s+fd00::7/)
  const pub = await run('kdig', ['@127.0.0.1', '-p', String(srv.ports.tls), '+tls', '+short', Z, 'SOA'])
  assert.match(pub.stdout, /^ns\.members\.example\. hostmaster\.members\.example\. \d+ /)
  const m = await fetch(`http://127.0.0.1:${srv.ports.metrics}/metrics`).then((r) => r.text())
  assert.match(m, /autotunnel_dns_updates_total\{rcode="NOERROR"\} 1/)
  assert.match(m, /autotunnel_dns_queries_total\{rcode="NOERROR",transport="tls"\} 2/)
  assert.match(m, /autotunnel_leases_live 0/)
  const printed = /^listening tls 127\.0\.0\.1:\d+ sha256=([0-9A-F:]{95})$/m.exec(srv.lines.join('\n'))?.[1]
  const real = new X509Certificate(readFileSync(join(srv.dir, 'tls.crt'))).fingerprint256
  assert.equal(printed, real, 'the printed fingerprint is the certificate in DIR')
  assert.equal(await srv.stop(), 0)
})

test('accounts while running: password-derived key, passwd re-keys, remove deletes the records', async (t) => {
  const { deriveTsigKey } = await import('../../src/dns/account-key.js')
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  await srv.start([], { tls: false })
  const dave = await srv.addAccount('dave', { password: 'open sesame' })
  assert.equal(dave.secret, deriveTsigKey('dave', ZONE, 'open sesame').toString('base64'))
  assert.deepEqual([dave.domain, dave.keyName, dave.algorithm], [`dave.${ZONE}`, `dave.${Z}`, 'hmac-sha256'])
  assert.equal((await srv.nsupdate(tsigArg(dave), [`update add pc.dave.${Z} 60 A 192.0.2.44`])).code, 0)
  const list = await run(BIN_PATH(), ['account', 'list', '--data', srv.dir, '--json'])
  assert.deepEqual(
    (JSON.parse(list.stdout) as { user: string; derived: boolean }[]).map((a) => [a.user, a.derived]),
    [['dave', true]],
  )
  const pw = await run(BIN_PATH(), ['account', 'passwd', 'dave', '--data', srv.dir, '--json'])
  const rekeyed = JSON.parse(pw.stdout) as typeof dave
  assert.notEqual(rekeyed.secret, dave.secret)
  await new Promise((r) => setTimeout(r, 50))
  assert.match(
    (await srv.nsupdate(tsigArg(dave), [`update add pc.dave.${Z} 60 A 192.0.2.45`])).stderr,
    /NOTAUTH\(BADSIG\)/,
  )
  assert.match((await srv.dig(['-y', tsigArg(rekeyed), `pc.dave.${Z}`, 'A'])).stdout, /192\.0\.2\.44/)
  const rm = await run(BIN_PATH(), ['account', 'remove', 'dave', '--data', srv.dir])
  assert.match(rm.stdout, /removed account dave and 1 record/)
  // The server notices within its one-second check and serves the zone without dave's names: a new account
  // dave (a new owner) finds nothing of the old one's. Unsigned, dave's names are REFUSED whether he exists or not.
  await new Promise((r) => setTimeout(r, 1500))
  const again = await srv.addAccount('dave')
  const t0 = Date.now()
  let status = ''
  while (Date.now() - t0 < 3000) {
    status = /status: (\w+)/.exec((await srv.dig(['-y', tsigArg(again), `pc.dave.${Z}`, 'A'])).stdout)?.[1] ?? ''
    if (status === 'NXDOMAIN') break
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(status, 'NXDOMAIN')
  assert.match((await srv.dig([`pc.dave.${Z}`, 'A'])).stdout, /status: REFUSED/)
})

test('names keep the case they were written in (RFC 4343): SRV owner and target, after a restart too', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  const alice = await srv.addAccount('alice')
  await srv.start()
  const key = tsigArg(alice)
  const target = `AutoTunnel-00.Alice.${Z}`
  const owner = `_AutoTunnel._udp.MacBook.alice.${Z}`
  const add = await srv.nsupdate(key, [
    `update add ${owner} 60 SRV 0 0 4500 ${target}`,
    `update add ${target} 60 AAAA fd00::1`,
  ])
  assert.equal(add.code, 0, add.stderr)
  const read = async (): Promise<string[]> => {
    // Queried in lower case: the question's spelling is echoed as the answer's owner, the RDATA keeps its case.
    const r = await srv.dig(['-y', key, '+noall', '+answer', owner.toLowerCase(), 'SRV', target.toUpperCase(), 'AAAA'])
    return answers(r.stdout)
  }
  const want = [`${owner.toLowerCase()} 60 IN SRV 0 0 4500 ${target}`, `${target.toUpperCase()} 60 IN AAAA fd00::1`]
  assert.deepEqual(await read(), want)
  // A case-insensitively equal record is the same record: adding it again in other case changes nothing but
  // the spelling, and deleting it in any case removes it.
  const again = await srv.nsupdate(key, [`update add ${owner.toLowerCase()} 60 SRV 0 0 4500 ${target.toLowerCase()}`])
  assert.equal(again.code, 0, again.stderr)
  const one = await srv.dig(['-y', key, '+noall', '+answer', owner, 'SRV'])
  assert.deepEqual(answers(one.stdout), [`${owner} 60 IN SRV 0 0 4500 ${target.toLowerCase()}`])
  const back = await srv.nsupdate(key, [`update add ${owner} 60 SRV 0 0 4500 ${target}`])
  assert.equal(back.code, 0, back.stderr)
  assert.equal(await srv.stop(), 0)
  await srv.start()
  assert.deepEqual(await read(), want, 'case survives a restart (the store keeps names as written)')
  const del = await srv.nsupdate(key, [`update delete ${owner.toUpperCase()} SRV 0 0 4500 ${target.toUpperCase()}`])
  assert.equal(del.code, 0, del.stderr)
  const gone = await srv.dig(['-y', key, '+noall', '+answer', owner, 'SRV'])
  assert.deepEqual(answers(gone.stdout), [])
})

test('--stun advertises STUN servers: SRV _stun._udp.ZONE with address records at its targets (dig); bad values refused', async (t) => {
  const srv = new ServerProcess()
  t.after(() => srv.cleanup())
  await srv.start(['--stun', '192.0.2.1', '--stun', '[2001:db8::1]:3479'], { tls: false })
  const dig = async (name: string, type: string): Promise<string[]> =>
    answers((await run('dig', ['@127.0.0.1', '-p', String(srv.ports.dns), '+noall', '+answer', name, type])).stdout)
  assert.deepEqual((await dig(`_stun._udp.${Z}`, 'SRV')).map((l) => l.split(' ').slice(3).join(' ')).sort(), [
    `SRV 0 0 3478 s1._stun._udp.${Z}`,
    `SRV 1 0 3479 s2._stun._udp.${Z}`,
  ])
  assert.deepEqual(
    (await dig(`s1._stun._udp.${Z}`, 'A')).map((l) => l.split(' ').slice(3).join(' ')),
    ['A 192.0.2.1'],
  )
  assert.deepEqual(
    (await dig(`s2._stun._udp.${Z}`, 'AAAA')).map((l) => l.split(' ').slice(3).join(' ')),
    ['AAAA 2001:db8::1'],
  )
  const bad = await run(BIN_PATH(), ['server', '--zone', ZONE, '--data', srv.dir, '--stun', 'stun.example.net'])
  assert.notEqual(bad.code, 0)
  assert.match(bad.stderr, /--stun wants ADDR\[:PORT\] with an IP address/)
})
