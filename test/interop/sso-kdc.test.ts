// The per-host KDC (src/sso/kdc.ts) against real MIT Kerberos on loopback: krb5kdc with our kdc.conf, kinit with
// PKINIT (RFC 4556) using certificates of our account CA profiles (src/sso/certs.ts).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { nullLogger } from '../../src/io/log.js'
import {
  createAccountCa,
  generateKeyPair,
  issueCertificate,
  krbtgtPrincipal,
  loadCa,
  ownerPrincipal,
} from '../../src/sso/certs.js'
import { LocalKdc } from '../../src/sso/kdc.js'
import { freePort, LOOPBACK, retryOnAddrInUse } from './ports.js'

const run = promisify(execFile)
const FQDN = 'desktop.alice.members.example'
const REALM = FQDN.toUpperCase()

async function material(
  dir: string,
  account: string,
  hostFqdns: { name: string; fqdn: string; kind: 'kdc' | 'client' }[],
) {
  const ca = await createAccountCa(account, `${account}.members.example`)
  const m = await loadCa(ca.certPem, ca.keyPem)
  await writeFile(join(dir, `${account}-ca.pem`), ca.certPem)
  for (const h of hostFqdns) {
    const k = await generateKeyPair()
    const cert = await issueCertificate({
      ca: m,
      kind: h.kind,
      publicKey: k.keys.publicKey as never,
      account,
      fqdn: h.fqdn,
      principals: h.kind === 'kdc' ? [krbtgtPrincipal(REALM)] : [ownerPrincipal(account, REALM)],
    })
    await writeFile(join(dir, `${h.name}.pem`), cert)
    await writeFile(join(dir, `${h.name}-key.pem`), k.keyPem, { mode: 0o600 })
  }
}

test('local KDC: PKINIT with the account CA gives a 10-hour ticket; other CA, revoked host and password refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sso-kdc-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await material(dir, 'alice', [
    { name: 'kdc', fqdn: FQDN, kind: 'kdc' },
    { name: 'laptop', fqdn: 'laptop.alice.members.example', kind: 'client' },
    { name: 'tablet', fqdn: 'tablet.alice.members.example', kind: 'client' },
  ])
  await material(dir, 'bob', [{ name: 'bob', fqdn: 'laptop.alice.members.example', kind: 'client' }])
  let kdc: LocalKdc | undefined
  const port = await retryOnAddrInUse(async () => {
    const p = await freePort()
    kdc = new LocalKdc(
      { log: nullLogger },
      {
        dir: join(dir, 'kdc'),
        realm: REALM,
        fqdn: FQDN,
        account: 'alice',
        listen: [LOOPBACK],
        port: p,
        kdcCert: join(dir, 'kdc.pem'),
        kdcKey: join(dir, 'kdc-key.pem'),
        caFile: join(dir, 'alice-ca.pem'),
      },
    )
    await kdc.init([FQDN, 'laptop.alice.members.example', 'tablet.alice.members.example'])
    await kdc.start()
    return p
  })
  t.after(() => kdc?.stop())
  assert.ok(kdc)
  const clientConf = join(dir, 'client-krb5.conf')
  await writeFile(
    clientConf,
    `[libdefaults]\n\tdefault_realm = ${REALM}\n\tdns_lookup_kdc = false\n[realms]\n\t${REALM} = {\n\t\tkdc = ${LOOPBACK}:${port}\n\t\tpkinit_anchors = FILE:${join(dir, 'alice-ca.pem')}\n\t}\n`,
  )
  const env = { ...process.env, KRB5_CONFIG: clientConf, KRB5CCNAME: `FILE:${join(dir, 'ccache')}` }
  const kinit = (cert: string, anchors: string[] = []) =>
    run(
      'kinit',
      [
        '-X',
        `X509_user_identity=FILE:${join(dir, `${cert}.pem`)},${join(dir, `${cert}-key.pem`)}`,
        ...anchors.flatMap((a) => ['-X', `X509_anchors=FILE:${join(dir, a)}`]),
        `alice@${REALM}`,
      ],
      {
        env,
        timeout: 10_000,
      },
    )
  await kinit('laptop')
  const { stdout } = await run('klist', [], { env })
  assert.match(stdout, new RegExp(`Default principal: alice@${REALM.replace(/\./g, '\\.')}`))
  const m = /(\d\d\/\d\d\/\d\d \d\d:\d\d:\d\d)\s+(\d\d\/\d\d\/\d\d \d\d:\d\d:\d\d)\s+krbtgt\//.exec(stdout)
  assert.ok(m?.[1] && m[2], stdout)
  const hours = (Date.parse(m[2]) - Date.parse(m[1])) / 3_600_000
  assert.ok(hours > 9.9 && hours <= 10, `ticket lifetime ${hours} h, want 10`)

  await assert.rejects(
    // The client trusts bob's CA too, so it sends his chain: the refusal is the KDC's (pkinit_anchors).
    kinit('bob', ['alice-ca.pem', 'bob-ca.pem']),
    // KDC_ERR_CANT_VERIFY_CERTIFICATE (RFC 4556 3.2.3), not the client's own check ("verify own certificate").
    (e: Error) => /Can't verify certificate/.test(e.message) && !/verify own certificate/.test(e.message),
    "a certificate of bob's CA is refused by the KDC",
  )
  await kdc.setAllowedHosts([FQDN, 'laptop.alice.members.example'])
  await assert.rejects(
    kinit('tablet'),
    /mismatch|Preauthentication failed/i,
    'a host no longer on the list (revoked) is refused at once',
  )
  await kinit('laptop')
  await assert.rejects(
    run('kinit', [`alice@${REALM}`], { env, timeout: 10_000, input: 'guess\n' } as never),
    /Pre-authentication failed|Preauthentication failed/,
    'no password authentication: the principal has no key',
  )
})
