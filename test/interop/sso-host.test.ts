// SsoHost (src/sso/host.ts) against the real SSO service in-process (SsoService on a DnsService, TSIG-signed) and
// real MIT krb5kdc on loopback, its system files in a temporary directory. The case here is the race a clean-clone
// CI run hit in test/lab/sso.test.ts ("kinit: Client name mismatch"): the peer table arrives while start() runs, after
// the enrolment went out. krb5.conf must never name a realm that the client certificate does not name the owner in
// (kinit for that realm would be refused by its KDC), however the steps interleave.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { UpdateRequest, UpdateResult } from '../../src/dns/client/update.js'
import { signMessage, type TsigKey, verifyMessage } from '../../src/dns/tsig.js'
import { Opcode } from '../../src/dns/wire/header.js'
import { decodeMessage, emptyMessage, type Message } from '../../src/dns/wire/message.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { FakeClock } from '../../src/io/clock.fake.js'
import { nullLogger } from '../../src/io/log.js'
import type { ServiceConfig } from '../../src/server/config.js'
import type { DnsService } from '../../src/server/service.js'
import { FileSsoState } from '../../src/server/sso-ca-store.js'
import { SsoService } from '../../src/server/sso-service.js'
import { aliceService, ZONE } from '../../src/server/test-helpers.js'
import { x509 } from '../../src/sso/certs.js'
import { SsoHost } from '../../src/sso/host.js'
import { decodeSubjectAltName } from '../../src/sso/krb5-name.js'
import { freePort, retryOnAddrInUse } from './ports.js'

const cfg: ServiceConfig = {
  zone: ZONE,
  nsName: `ns.${ZONE}`,
  nsAddrs: ['127.0.0.1'],
  hostmaster: `hostmaster.${ZONE}`,
  dnsPort: 53,
  tlsPort: undefined,
  leaseMinSec: 60,
  leaseMaxSec: 7200,
  infraTtlSec: 300,
  negativeTtlSec: 60,
  fudgeSec: 300,
}
const ALICE: TsigKey = { name: `alice.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) }
const DOMAIN = `alice.${ZONE}`.slice(0, -1)
const LAPTOP = { fqdn: `laptop.${DOMAIN}`, ula: 'fd00::2' }
let svcClock = new FakeClock(Date.now())

/** `msg` TSIG-signed with alice's key through the in-process service; the verified answer. */
async function exchange(svc: DnsService, msg: Message): Promise<Message> {
  msg.edns = { udpSize: 1232, version: 0, do: false, options: [] }
  const now = Math.floor(svcClock.now() / 1000)
  const signed = signMessage(msg, ALICE, { timeSigned: now })
  const out = await new Promise<Buffer>((resolve) =>
    svc.handle(signed.wire, {
      peer: { transport: 'tcp', address: '127.0.0.1', port: 1, local: '' },
      reply: (b) => resolve(b as Buffer),
      send: () => {},
    }),
  )
  const v = verifyMessage(out, () => ALICE, { requestMac: signed.mac, now })
  return v.ok ? v.msg : decodeMessage(out)
}

/** The realms krb5.conf has a block for (the own realm has two: its auth_to_local rule and its KDC). */
const confRealms = (text: string) =>
  [...new Set([...text.matchAll(/^\t([A-Z0-9.-]+) = \{$/gm)].map((m) => m[1] as string))].sort()

/** The realms the client certificate names the owner in (its id-pkinit-san entries). */
function certRealms(pem: string): string[] {
  const ext = new x509.X509Certificate(pem).getExtension('2.5.29.17')
  assert.ok(ext, 'the client certificate has a SAN')
  return decodeSubjectAltName(Buffer.from(ext.value))
    .flatMap((e) => (e.kind === 'principal' ? [e.principal.realm] : []))
    .sort()
}

test('SSO host: peers arriving during start never put a realm in krb5.conf before the client certificate names it', {
  timeout: 60_000,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sso-host-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const clock = new FakeClock(Date.now()) // the service's (TSIG time) and the host's (debounce)
  svcClock = clock
  const s = aliceService(t, cfg, clock)
  s.svc.use(new SsoService({ log: nullLogger, state: new FileSsoState(s.dir) }, { zone: ZONE }).handler)
  let host: SsoHost | undefined
  let enrolments = 0
  const sink = {
    async update(req: UpdateRequest): Promise<UpdateResult> {
      enrolments++
      // The peer table arrives while the first enrolment is on its way (as the agent's watchers may deliver it).
      if (enrolments === 1) host?.setPeers([LAPTOP])
      const m = emptyMessage({
        id: enrolments,
        opcode: Opcode.UPDATE,
        questions: [{ name: req.zone, type: RRType.SOA, class: RRClass.IN }],
        authorities: [...req.updates],
      })
      return { rcode: (await exchange(s.svc, m)).rcode, leaseSec: undefined, via: 'in-process' }
    },
  }
  const query = {
    query: (name: string, type: number) =>
      exchange(s.svc, emptyMessage({ id: 7, opcode: Opcode.QUERY, questions: [{ name, type, class: RRClass.IN }] })),
  }
  const paths = {
    krb5Conf: join(dir, 'krb5.conf'),
    keytab: join(dir, 'krb5.keytab'),
    sshdDropIn: join(dir, 'sshd-autotunnel.conf'),
    sshDropIn: join(dir, 'ssh-autotunnel.conf'),
    shareDir: join(dir, 'share', 'autotunnel-sso'),
    sshHostKey: join(dir, 'ssh_host_ed25519_key.pub'),
    knownHosts: join(dir, 'ssh_known_hosts'),
  }
  await retryOnAddrInUse(async () => {
    host = new SsoHost(
      { log: nullLogger, clock, sink, query },
      {
        stateDir: join(dir, 'state'),
        zone: ZONE,
        domain: DOMAIN,
        host: 'desktop',
        account: 'alice',
        ssoUser: { name: 'root', uid: 0, gid: 0 },
        ula: '::1',
        kdcPort: await freePort(),
        paths,
      },
    )
    await host.start()
    if (host.status().state !== 'running') {
      await host.stop()
      throw new Error(`SSO did not start: ${host.status().lastError}`) // retried when the KDC's port was taken
    }
  })
  assert.ok(host)
  t.after(() => host?.stop())
  const share = join(paths.shareDir, `desktop.${DOMAIN}`)
  const consistent = async (when: string) => {
    const conf = confRealms(await readFile(paths.krb5Conf, 'utf8'))
    const cert = certRealms(await readFile(join(share, 'client.pem'), 'utf8'))
    for (const r of conf) assert.ok(cert.includes(r), `${when}: krb5.conf names ${r}, the certificate only ${cert}`)
    return conf
  }
  assert.equal(enrolments >= 1, true)
  const atStart = await consistent('right after start')
  assert.deepEqual(atStart, [`DESKTOP.${DOMAIN.toUpperCase()}`], 'the peer waits for its own step')

  // The debounced peers step: a new realm, so the client certificate is issued again naming it, then krb5.conf.
  clock.advance(300)
  const want = [`DESKTOP.${DOMAIN.toUpperCase()}`, `LAPTOP.${DOMAIN.toUpperCase()}`]
  const deadline = Date.now() + 30_000
  while (!(await readFile(paths.krb5Conf, 'utf8')).includes(`LAPTOP.${DOMAIN.toUpperCase()} = {`)) {
    assert.ok(Date.now() < deadline, `krb5.conf never named the laptop: ${host.status().lastError}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  assert.deepEqual(await consistent('after the peers step'), want)
  assert.deepEqual(host.status().realms, want)

  await host.stop()
  await assert.rejects(readFile(paths.krb5Conf), { code: 'ENOENT' }, 'stop removes the krb5.conf it made')
})
