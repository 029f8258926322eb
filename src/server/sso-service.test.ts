import assert from 'node:assert/strict'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { EdnsOptionCode, findOption } from '../dns/edns.js'
import { signMessage, type TsigKey, verifyMessage } from '../dns/tsig.js'
import { Opcode, Rcode } from '../dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../dns/wire/message.js'
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { createCsr, generateKeyPair, krbtgtPrincipal, ownerPrincipal, x509 } from '../sso/certs.js'
import {
  CertKindCode,
  certName,
  decodeCertRdata,
  decodeExtendedError,
  encodeEnrolRdata,
  encodeRevokeRdata,
  enrolName,
  SsoRRType,
} from '../sso/enrol-codec.js'
import { decodeSubjectAltName, principalText } from '../sso/krb5-name.js'
import { sshString } from '../sso/ssh-cert.js'
import { addAccount } from './accounts.js'
import type { ServiceConfig } from './config.js'
import { RevokedHostsFile } from './revoked-hosts.js'
import type { DnsService } from './service.js'
import { accountSsoDir, FileSsoState, setHostRevoked } from './sso-ca-store.js'
import { SsoService } from './sso-service.js'
import { aaaa, aliceService, rr, updateMsg, ZONE } from './test-helpers.js'

failOnLeakedResources()

const cfg: ServiceConfig = {
  zone: ZONE,
  nsName: `ns.${ZONE}`,
  nsAddrs: ['192.0.2.53'],
  hostmaster: `hostmaster.${ZONE}`,
  dnsPort: 5300,
  tlsPort: 8530,
  leaseMinSec: 2,
  leaseMaxSec: 5,
  infraTtlSec: 300,
  negativeTtlSec: 60,
  fudgeSec: 300,
}
const ALICE: TsigKey = { name: `alice.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) }
const BOB: TsigKey = { name: `bob.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 2) }
const D = `alice.${ZONE}`.slice(0, -1)

function setup(t: { after: (fn: () => void) => void }) {
  const clock = new FakeClock(Date.now())
  const s = aliceService(t, cfg, clock)
  addAccount(s.store.db, ZONE, { user: 'bob', algorithm: 'hmac-sha256', secret: BOB.secret, derived: false, nowMs: 0 })
  s.svc.keys.reload()
  const sso = new SsoService({ log: nullLogger, state: new FileSsoState(s.dir) }, { zone: ZONE })
  s.svc.use(sso.handler)
  return { ...s, sso }
}

/** Sends `msg` signed with `key` (or unsigned) through the service; the answer, its TSIG checked. */
async function send(svc: DnsService, msg: Message, key: TsigKey | undefined, clock: FakeClock): Promise<Message> {
  msg.edns = { udpSize: 1232, version: 0, do: false, options: [] }
  const now = Math.floor(clock.now() / 1000)
  const signed = key ? signMessage(msg, key, { timeSigned: now }) : undefined
  const wire = signed ? signed.wire : encodeMessage(msg)
  const out = await new Promise<Buffer>((resolve) =>
    svc.handle(wire, {
      peer: { transport: 'tcp', address: '127.0.0.1', port: 1, local: '' },
      reply: (b) => resolve(b as Buffer),
      send: () => {},
    }),
  )
  if (!key || !signed) return decodeMessage(out)
  const v = verifyMessage(out, () => key, { requestMac: signed.mac, now })
  assert.ok(v.ok, 'the answer is signed with the request key')
  return v.msg
}

function enrolRR(name: string, kind: number, csr: Buffer): RR {
  return {
    name,
    type: SsoRRType.ATENROL,
    class: RRClass.IN,
    ttl: 0,
    data: { raw: encodeEnrolRdata({ kind, csr } as never) },
  }
}

/** What `autotunnel revoke HOST` sends (src/agent/revoke.ts). */
const revokeRR = (host: string): RR => ({
  name: enrolName(host, D),
  type: SsoRRType.ATREVOKE,
  class: RRClass.IN,
  ttl: 0,
  data: { raw: encodeRevokeRdata() },
})

const fetchQuery = (name: string): Message =>
  emptyMessage({ id: 9, opcode: Opcode.QUERY, questions: [{ name, type: SsoRRType.ATCERT, class: RRClass.IN }] })

function ede(m: Message): string {
  const o = findOption(m.edns, EdnsOptionCode.EXTENDED_ERROR)
  return (o && decodeExtendedError(o)?.text) ?? ''
}

async function csrFor(fqdn: string, principals = [ownerPrincipal('alice', fqdn.toUpperCase())]) {
  const k = await generateKeyPair()
  return createCsr({ keys: k.keys, account: 'alice', fqdn, principals })
}

test('enrolment: a signed UPDATE with a CSR, then a signed query, gives the CA, KDC and client certificates', async (t) => {
  const { svc, clock, dir } = setup(t)
  const kdcCsr = await createCsr({
    keys: (await generateKeyPair()).keys,
    account: 'alice',
    fqdn: `desktop.${D}`,
    principals: [],
  })
  let res = await send(svc, updateMsg([], [enrolRR(enrolName('desktop', D), CertKindCode.KDC, kdcCsr)]), ALICE, clock)
  assert.equal(res.rcode, Rcode.NOERROR, ede(res))
  const clientCsr = await csrFor(`desktop.${D}`, [
    ownerPrincipal('alice', `DESKTOP.${D.toUpperCase()}`),
    ownerPrincipal('alice', `LAPTOP.${D.toUpperCase()}`),
  ])
  res = await send(svc, updateMsg([], [enrolRR(enrolName('desktop', D), CertKindCode.CLIENT, clientCsr)]), ALICE, clock)
  assert.equal(res.rcode, Rcode.NOERROR, ede(res))

  const hostKey = Buffer.concat([sshString('ssh-ed25519'), sshString(Buffer.alloc(32, 7))])
  res = await send(svc, updateMsg([], [enrolRR(enrolName('desktop', D), CertKindCode.SSH_HOST, hostKey)]), ALICE, clock)
  assert.equal(res.rcode, Rcode.NOERROR, ede(res))
  res = await send(
    svc,
    updateMsg([], [enrolRR(enrolName('desktop', D), CertKindCode.SSH_HOST, Buffer.from('junk'))]),
    ALICE,
    clock,
  )
  assert.equal(res.rcode, Rcode.FORMERR)
  assert.match(ede(res), /SSH host key/)

  res = await send(svc, fetchQuery(certName('desktop', D)), ALICE, clock)
  assert.equal(res.rcode, Rcode.NOERROR)
  const all = res.answers.map((a) => decodeCertRdata((a.data as { raw: Buffer }).raw))
  assert.deepEqual(
    all.map((c) => c.kind),
    [CertKindCode.CA, CertKindCode.KDC, CertKindCode.CLIENT, CertKindCode.SSH_HOST],
  )
  const sshCert = all[3]?.der ?? Buffer.alloc(0)
  assert.ok(sshCert.includes(Buffer.from('ssh-ed25519-cert-v01@openssh.com')) && sshCert.includes(Buffer.alloc(32, 7)))
  assert.ok(sshCert.includes(Buffer.from(`desktop.${D}`)), 'principals: the full name')
  const certs = all.slice(0, 3)
  const [ca, kdc, client] = certs.map((c) => new x509.X509Certificate(c.der))
  assert.ok(ca && kdc && client)
  assert.equal(await kdc.verify({ publicKey: ca.publicKey, signatureOnly: true }), true)
  assert.equal(await client.verify({ publicKey: ca.publicKey, signatureOnly: true }), true)
  const sans = (c: x509.X509Certificate) =>
    decodeSubjectAltName(Buffer.from(c.getExtension('2.5.29.17')?.value ?? new ArrayBuffer(0))).map((e) =>
      e.kind === 'principal' ? principalText(e.principal) : e.kind === 'dns' ? e.name : '?',
    )
  const R = `DESKTOP.${D.toUpperCase()}`
  assert.deepEqual(sans(kdc), [principalText(krbtgtPrincipal(R)), `desktop.${D}`])
  assert.deepEqual(sans(client), [`alice@${R}`, `alice@LAPTOP.${D.toUpperCase()}`])
  assert.equal(kdc.subject, `O=autotunnel, OU=alice, CN=desktop.${D}`)

  const sso = accountSsoDir(dir, 'alice')
  assert.equal(statSync(join(sso, 'ca-key.pem')).mode & 0o777, 0o600, 'CA key owner-only, like the TSIG store')
  assert.equal(statSync(sso).mode & 0o777, 0o700)
})

test('refusals: foreign name, foreign key, unsigned, malformed or bad CSR, revoked host: clear error, nothing changes', async (t) => {
  const { svc, clock, dir, sso } = setup(t)
  const up = (rr: RR) => updateMsg([], [rr])
  const cases: [string, Message, TsigKey | undefined, number, RegExp][] = [
    [
      'client CSR for a realm outside the subdomain',
      up(
        enrolRR(
          enrolName('laptop', D),
          CertKindCode.CLIENT,
          await csrFor(`laptop.${D}`, [ownerPrincipal('alice', 'LAPTOP.BOB.MEMBERS.EXAMPLE')]),
        ),
      ),
      ALICE,
      Rcode.REFUSED,
      /outside ALICE\.MEMBERS\.EXAMPLE/,
    ],
    [
      'client CSR for another principal',
      up(
        enrolRR(
          enrolName('laptop', D),
          CertKindCode.CLIENT,
          await csrFor(`laptop.${D}`, [ownerPrincipal('root', `LAPTOP.${D.toUpperCase()}`)]),
        ),
      ),
      ALICE,
      Rcode.REFUSED,
      /only the account owner alice/,
    ],
    [
      'KDC CSR for another host realm',
      up(
        enrolRR(
          enrolName('laptop', D),
          CertKindCode.KDC,
          await csrFor(`laptop.${D}`, [krbtgtPrincipal(`DESKTOP.${D.toUpperCase()}`)]),
        ),
      ),
      ALICE,
      Rcode.REFUSED,
      /this host's KDC is krbtgt\/LAPTOP/,
    ],
    [
      'CSR whose subject is another host',
      up(enrolRR(enrolName('laptop', D), CertKindCode.CLIENT, await csrFor(`desktop.${D}`))),
      ALICE,
      Rcode.REFUSED,
      /subject CN .* is not this host/,
    ],
    [
      "enrolment name under bob's subdomain signed by alice",
      up(
        enrolRR(
          enrolName('laptop', `bob.${ZONE}`),
          CertKindCode.CLIENT,
          await csrFor(`laptop.bob.${ZONE}`.slice(0, -1)),
        ),
      ),
      ALICE,
      Rcode.REFUSED,
      /belongs to account bob, but the request is signed with alice's key/,
    ],
    [
      "alice's name signed by bob's key",
      up(enrolRR(enrolName('laptop', D), CertKindCode.CLIENT, await csrFor(`laptop.${D}`))),
      BOB,
      Rcode.REFUSED,
      /signed with bob's key/,
    ],
    [
      'unsigned',
      up(enrolRR(enrolName('laptop', D), CertKindCode.CLIENT, await csrFor(`laptop.${D}`))),
      undefined,
      Rcode.REFUSED,
      /must be TSIG-signed/,
    ],
    [
      'name not of the enrolment shape',
      up(enrolRR(`laptop.${D}.`, CertKindCode.CLIENT, await csrFor(`laptop.${D}`))),
      ALICE,
      Rcode.REFUSED,
      /outside any user's subdomain/,
    ],
    [
      'garbage CSR',
      up(enrolRR(enrolName('laptop', D), CertKindCode.CLIENT, Buffer.from('not a csr'))),
      ALICE,
      Rcode.FORMERR,
      /does not parse as PKCS#10/,
    ],
    [
      'bad RDATA version',
      up({
        name: enrolName('laptop', D),
        type: SsoRRType.ATENROL,
        class: RRClass.IN,
        ttl: 0,
        data: { raw: Buffer.from([9, 2, 0]) },
      }),
      ALICE,
      Rcode.FORMERR,
      /version 9/,
    ],
  ]
  // A CSR whose signature does not verify: flip a bit in the signature (the last octet).
  const tampered = Buffer.from(await csrFor(`laptop.${D}`))
  tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1
  cases.push([
    'CSR signature does not verify',
    up(enrolRR(enrolName('laptop', D), CertKindCode.CLIENT, tampered)),
    ALICE,
    Rcode.FORMERR,
    /(self-signature does not verify|signature cannot be checked)/,
  ])
  for (const [what, msg, key, rcode, text] of cases) {
    const res = await send(svc, msg, key, clock)
    assert.equal(res.rcode, rcode, what)
    assert.match(ede(res), text, what)
  }
  assert.equal(sso.stats.issued, 0)
  assert.equal(existsSync(join(dir, 'sso')), false, 'no CA made, nothing written')

  // Revoked: by `account revoke-host` (the file) and by `autotunnel revoke` (ATREVOKE UPDATE).
  setHostRevoked(dir, 'alice', 'laptop')
  let res = await send(
    svc,
    up(enrolRR(enrolName('laptop', D), CertKindCode.CLIENT, await csrFor(`laptop.${D}`))),
    ALICE,
    clock,
  )
  assert.equal(res.rcode, Rcode.REFUSED)
  assert.match(ede(res), /host laptop of alice was revoked/)
  res = await send(svc, fetchQuery(certName('laptop', D)), ALICE, clock)
  assert.equal(res.rcode, Rcode.REFUSED, 'a revoked host fetches nothing either')
  res = await send(
    svc,
    up(enrolRR(enrolName('desktop', D), CertKindCode.CLIENT, await csrFor(`desktop.${D}`))),
    ALICE,
    clock,
  )
  assert.equal(res.rcode, Rcode.NOERROR, 'the other hosts keep working')
  const revoke = revokeRR('desktop')
  res = await send(svc, up(revoke), BOB, clock)
  assert.equal(res.rcode, Rcode.REFUSED, "bob cannot revoke alice's host")
  res = await send(svc, up(revoke), ALICE, clock)
  assert.equal(res.rcode, Rcode.NOERROR)
  res = await send(svc, up(revoke), ALICE, clock)
  assert.equal(res.rcode, Rcode.NOERROR, 'revoking again is not an error')
  res = await send(
    svc,
    up(enrolRR(enrolName('desktop', D), CertKindCode.CLIENT, await csrFor(`desktop.${D}`))),
    ALICE,
    clock,
  )
  assert.equal(res.rcode, Rcode.REFUSED)
  assert.deepEqual(readdirSync(accountSsoDir(dir, 'alice')).sort(), ['ca-key.pem', 'ca.pem', 'revoked-hosts'])
})

test('ordinary UPDATEs and queries are not taken by the SSO handler', async (t) => {
  const { svc, clock, sso } = setup(t)
  const res = await send(
    svc,
    emptyMessage({ id: 3, opcode: Opcode.QUERY, questions: [{ name: `x.${D}.`, type: 28, class: RRClass.IN }] }),
    ALICE,
    clock,
  )
  assert.equal(res.rcode, Rcode.NXDOMAIN)
  assert.equal(sso.stats.issued + Object.keys(sso.stats.refused).length, 0)
})

test("a revoked host's records: adds REFUSED from the revocation's answer on, deletions and other hosts pass, unrevoke-host lifts it", async (t) => {
  const clock = new FakeClock(Date.now())
  let revoked: RevokedHostsFile | undefined
  const s = aliceService(
    t,
    (dir) => {
      revoked = new RevokedHostsFile(dir, () => clock.now())
      return { ...cfg, revokedHosts: revoked }
    },
    clock,
  )
  s.svc.use(new SsoService({ log: nullLogger, state: new FileSsoState(s.dir, revoked) }, { zone: ZONE }).handler)
  const add = async (...rrs: RR[]) => (await send(s.svc, updateMsg([], rrs), ALICE, clock)).rcode
  const host = (h: string) => `${h}.${D}.`
  const hostList = `_autotunnel._udp.${D}.`
  const srv = (h: string) => rr(`_autotunnel._udp.${host(h)}`, RRType.SRV, srvData(h))
  const srvData = (h: string) => ({ priority: 0, weight: 0, port: 4500, target: `AutoTunnel-${h}.${D}.` })
  const ptr = (name: string, target: string) => rr(name, RRType.PTR, { ptrdname: target })

  assert.equal(await add(aaaa(host('laptop'), 'fd00::1'), srv('laptop')), Rcode.NOERROR, 'before: published')
  const revoke = revokeRR('laptop')
  assert.equal((await send(s.svc, updateMsg([], [revoke]), ALICE, clock)).rcode, Rcode.NOERROR)
  // No clock step: the revocation itself makes the list be read again.
  const refused: [string, RR][] = [
    ['the host name', aaaa(host('laptop'), 'fd00::1')],
    ['its key record (TXT at H.D)', rr(host('laptop'), RRType.TXT, { strings: [Buffer.from('v=at-ike1')] })],
    ['its SRV', srv('laptop')],
    ['its PTR in the host list', ptr(hostList, `_autotunnel._udp.${host('laptop')}`)],
    ['its DNS-SD instance', rr(`laptop._ssh._tcp.${D}.`, RRType.SRV, { ...srvData('laptop'), target: host('laptop') })],
    ['a DNS-SD PTR to it', ptr(`_ssh._tcp.${D}.`, `laptop._ssh._tcp.${D}.`)],
    ['in upper case', aaaa(`LAPTOP.${D}.`, 'fd00::1')],
  ]
  for (const [what, r] of refused) assert.equal(await add(r), Rcode.REFUSED, what)
  // (another address: the same signed bytes again would be answered from the TSIG replay cache)
  const answer = await send(s.svc, updateMsg([], [aaaa(host('laptop'), 'fd00::9')]), ALICE, clock)
  assert.match(ede(answer), /host laptop of alice was revoked: .*autotunnel account unrevoke-host alice laptop/)
  // Its retransmission (the same signed bytes) is answered from the TSIG replay cache, with the same reason.
  const again = await send(s.svc, updateMsg([], [aaaa(host('laptop'), 'fd00::9')]), ALICE, clock)
  assert.equal(again.rcode, Rcode.REFUSED)
  assert.equal(ede(again), ede(answer), 'the replayed answer carries the Extended DNS Error too')
  assert.equal(await add(aaaa(host('desktop'), 'fd00::2'), srv('laptop')), Rcode.REFUSED, 'one such record refuses all')
  const ok: [string, RR][] = [
    ['another host', aaaa(host('desktop'), 'fd00::2')],
    ["another host's PTR", ptr(hostList, `_autotunnel._udp.${host('desktop')}`)],
    ['the service type enumeration', ptr(`_services._dns-sd._udp.${D}.`, `_ssh._tcp.${D}.`)],
  ]
  for (const [what, r] of ok) assert.equal(await add(r), Rcode.NOERROR, what)
  const del = rr(host('laptop'), RRType.ANY, null, { ttl: 0, class: RRClass.ANY })
  assert.equal(await add(del), Rcode.NOERROR, "the revoked host's own `down` still deletes")

  // `account unrevoke-host` edits the file from another process: in force within a second.
  setHostRevoked(s.dir, 'alice', 'laptop', false)
  clock.advance(1000)
  assert.equal(await add(aaaa(host('laptop'), 'fd00::1')), Rcode.NOERROR, 'unrevoked')
})
