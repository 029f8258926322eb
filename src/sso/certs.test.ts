import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import {
  createAccountCa,
  createCsr,
  generateKeyPair,
  issueCertificate,
  krbtgtPrincipal,
  loadCa,
  ownerPrincipal,
} from './certs.js'
import { DerError } from './der.js'
import { decodeKrb5PrincipalName, decodeSubjectAltName, encodeKrb5PrincipalName, principalText } from './krb5-name.js'

failOnLeakedResources()

const REALM = 'DESKTOP.ALICE.MEMBERS.EXAMPLE'
const openssl = (...args: string[]): string =>
  execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sso-certs-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** The GENERALSTRING/INTEGER/OBJECT lines of `openssl asn1parse -strparse` on the SAN extension's OCTET STRING. */
function sanDump(certFile: string): string[] {
  const lines = openssl('asn1parse', '-in', certFile).split('\n')
  const i = lines.findIndex((l) => l.includes('X509v3 Subject Alternative Name'))
  const octet = lines.slice(i + 1).find((l) => l.includes('OCTET STRING'))
  const off = octet?.trim().split(':')[0]
  assert.ok(off, 'SAN extension found by openssl asn1parse')
  // -dump prints a GeneralString's octets as hex lines under it; they are joined back into its text.
  const out: string[] = []
  for (const l of openssl('asn1parse', '-in', certFile, '-strparse', off, '-dump').split('\n')) {
    const hex = /^\s+[0-9a-f]{4} - ((?:[0-9a-f]{2}[ -])+)/.exec(l)
    if (hex?.[1] !== undefined) {
      out[out.length - 1] += Buffer.from(hex[1].replace(/[ -]/g, ''), 'hex').toString('latin1')
      continue
    }
    const item = l.replace(/^.*?(prim|cons):\s*/, '').trim()
    if (/GENERALSTRING/.test(item)) out.push('GENERALSTRING     :')
    else if (/INTEGER|OBJECT|cont \[/.test(item)) out.push(item)
  }
  return out
}

test('KRB5PrincipalName: byte-identical to what OpenSSL builds from the MIT PKINIT documentation recipe', async (t) => {
  const dir = await tmp(t)
  // The SEQUENCE the MIT admin guide (pkinit.html, "Generating client certificates") hands to openssl.
  const conf = `asn1=SEQUENCE:princ_name
[princ_name]
realm=EXP:0,GeneralString:${REALM}
principal_name=EXP:1,SEQUENCE:principal_seq
[principal_seq]
name_type=EXP:0,INTEGER:2
name_string=EXP:1,SEQUENCE:principals
[principals]
princ1=GeneralString:krbtgt
princ2=GeneralString:${REALM}
`
  await writeFile(join(dir, 'gen.cnf'), conf)
  openssl('asn1parse', '-genconf', join(dir, 'gen.cnf'), '-out', join(dir, 'ref.der'), '-noout')
  const { readFileSync } = await import('node:fs')
  const ref = readFileSync(join(dir, 'ref.der'))
  const ours = encodeKrb5PrincipalName(krbtgtPrincipal(REALM))
  assert.equal(ours.toString('hex'), ref.toString('hex'))
  assert.deepEqual(decodeKrb5PrincipalName(ref), krbtgtPrincipal(REALM))
})

test('profiles: CA, KDC and client certificates decoded back by openssl (EKU, otherName SAN, chain)', async (t) => {
  const dir = await tmp(t)
  const ca = await createAccountCa('alice', 'alice.members.example')
  const m = await loadCa(ca.certPem, ca.keyPem)
  const kdcKey = await generateKeyPair()
  const clientKey = await generateKeyPair()
  const kdc = await issueCertificate({
    ca: m,
    kind: 'kdc',
    publicKey: kdcKey.keys.publicKey as never,
    account: 'alice',
    fqdn: 'desktop.alice.members.example',
    principals: [krbtgtPrincipal(REALM)],
  })
  const client = await issueCertificate({
    ca: m,
    kind: 'client',
    publicKey: clientKey.keys.publicKey as never,
    account: 'alice',
    fqdn: 'laptop.alice.members.example',
    principals: [ownerPrincipal('alice', REALM), ownerPrincipal('alice', 'LAPTOP.ALICE.MEMBERS.EXAMPLE')],
  })
  const files = { ca: join(dir, 'ca.pem'), kdc: join(dir, 'kdc.pem'), client: join(dir, 'client.pem') }
  await writeFile(files.ca, ca.certPem)
  await writeFile(files.kdc, kdc)
  await writeFile(files.client, client)

  const caText = openssl('x509', '-in', files.ca, '-noout', '-text')
  assert.match(caText, /CA:TRUE, pathlen:0/)
  assert.match(caText, /Certificate Sign, CRL Sign/)
  assert.match(caText, /Public-Key: \(256 bit\)[\s\S]*NIST CURVE: P-256/)

  const kdcText = openssl('x509', '-in', files.kdc, '-noout', '-text')
  assert.match(kdcText, /Subject: O = autotunnel, OU = alice, CN = desktop\.alice\.members\.example/)
  assert.match(kdcText, /CA:FALSE/)
  assert.match(kdcText, /Extended Key Usage: *\n *Signing KDC Response\n/, 'EKU id-pkinit-KPKdc 1.3.6.1.5.2.3.5 only')
  assert.match(kdcText, /othername: 1\.3\.6\.1\.5\.2\.2::<unsupported>, DNS:desktop\.alice\.members\.example/)
  assert.deepEqual(sanDump(files.kdc), [
    'cont [ 0 ]',
    'OBJECT            :1.3.6.1.5.2.2',
    'cont [ 0 ]',
    'cont [ 0 ]',
    `GENERALSTRING     :${REALM}`,
    'cont [ 1 ]',
    'cont [ 0 ]',
    'INTEGER           :02',
    'cont [ 1 ]',
    'GENERALSTRING     :krbtgt',
    `GENERALSTRING     :${REALM}`,
    'cont [ 2 ]',
  ])

  const clientText = openssl('x509', '-in', files.client, '-noout', '-text')
  assert.match(
    clientText,
    /Extended Key Usage: *\n *PKINIT Client Auth\n/,
    'EKU id-pkinit-KPClientAuth 1.3.6.1.5.2.3.4',
  )
  const dump = sanDump(files.client)
  assert.deepEqual(
    dump.filter((l) => /GENERALSTRING|INTEGER/.test(l)),
    [
      `GENERALSTRING     :${REALM}`,
      'INTEGER           :01',
      'GENERALSTRING     :alice',
      'GENERALSTRING     :LAPTOP.ALICE.MEMBERS.EXAMPLE',
      'INTEGER           :01',
      'GENERALSTRING     :alice',
    ],
  )
  // Lifetime of days, inside the CA's.
  const dates = openssl('x509', '-in', files.client, '-noout', '-startdate', '-enddate')
  const [nb, na] = dates.split('\n').map((l) => Date.parse(l.split('=')[1] ?? ''))
  const days = ((na ?? 0) - (nb ?? 0)) / 86_400_000
  assert.ok(days > 6.9 && days < 7.1, `7 days, got ${days}`)
  for (const f of [files.kdc, files.client])
    assert.match(openssl('verify', '-CAfile', files.ca, f), /: OK/, 'chains to the account CA')
  const other = await createAccountCa('bob', 'bob.members.example')
  await writeFile(join(dir, 'bob-ca.pem'), other.certPem)
  assert.throws(() => openssl('verify', '-CAfile', join(dir, 'bob-ca.pem'), files.client), 'not under bob CA')
})

test('CSR: self-signature verifies in openssl, SAN principals decode back', async (t) => {
  const dir = await tmp(t)
  const k = await generateKeyPair()
  const der = await createCsr({
    keys: k.keys,
    account: 'alice',
    fqdn: 'laptop.alice.members.example',
    principals: [ownerPrincipal('alice', REALM)],
  })
  await writeFile(join(dir, 'csr.der'), der)
  const out = execFileSync('openssl', ['req', '-inform', 'der', '-in', join(dir, 'csr.der'), '-noout', '-verify'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  assert.equal(out, '')
  const { x509 } = await import('./certs.js')
  const csr = new x509.Pkcs10CertificateRequest(der)
  assert.equal(await csr.verify(), true)
  const ext = csr.getExtension('2.5.29.17')
  assert.ok(ext)
  const san = decodeSubjectAltName(Buffer.from(ext.value))
  assert.deepEqual(
    san.map((e) => (e.kind === 'principal' ? principalText(e.principal) : e.kind)),
    [`alice@${REALM}`],
  )
})

test('KRB5PrincipalName decoder: malformed input is a DerError, never another exception', () => {
  const good = encodeKrb5PrincipalName(ownerPrincipal('alice', REALM))
  for (let cut = 0; cut < good.length; cut++)
    assert.throws(() => decodeKrb5PrincipalName(good.subarray(0, cut)), DerError, `truncated at ${cut}`)
  assert.throws(() => decodeKrb5PrincipalName(Buffer.concat([good, Buffer.from([0])])), DerError)
  const bad = Buffer.from(good)
  bad[bad.length - 1] = 0x07
  assert.throws(() => decodeKrb5PrincipalName(bad), DerError, 'control character in a KerberosString')
  for (let i = 0; i < 500; i++) {
    const b = Buffer.from(good)
    const at = (i * 7) % b.length
    b[at] = (b[at] ?? 0) ^ (1 << (i % 8))
    try {
      decodeKrb5PrincipalName(b)
    } catch (e) {
      assert.ok(e instanceof DerError, String(e))
    }
  }
})
