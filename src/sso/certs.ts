// Certificate profiles of the per-account CA (RFC 5280 with RFC 4556 3.2.2 and 3.2.3 for PKINIT):
//   CA      self-signed, basicConstraints cA pathLen 0, keyCertSign|cRLSign; one per account, kept by the server
//   KDC     EKU id-pkinit-KPKdc, SAN otherName id-pkinit-san krbtgt/REALM@REALM (NT-SRV-INST) + dNSName FQDN
//   client  EKU id-pkinit-KPClientAuth, SAN otherName id-pkinit-san OWNER@REALM (NT-PRINCIPAL), one per realm
// Subjects are O=autotunnel, OU=<account>, CN=<host FQDN>: the KDCs authorise a client certificate by its subject
// (pkinit_cert_match), which is how a revoked host's certificate stops working before it expires.
//
// node:crypto verifies and parses X.509 (X509Certificate) and makes keys, but has no API that builds or signs a
// certificate or a CSR (no TBSCertificate encoder); @peculiar/x509 does both on top of WebCrypto.
import 'reflect-metadata'
import { randomBytes, webcrypto } from 'node:crypto'

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair

import * as x509 from '@peculiar/x509'
import {
  encodeSubjectAltName,
  ID_PKINIT_KP_CLIENT_AUTH,
  ID_PKINIT_KP_KDC,
  type KrbPrincipal,
  NameType,
  type SanEntry,
} from './krb5-name.js'

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

export const ID_CE_SUBJECT_ALT_NAME = '2.5.29.17'
export const SSO_ORG = 'autotunnel'
/** Host certificates live this long; the agent renews at half-life. */
export const DEFAULT_CERT_DAYS = 7
export const CA_DAYS = 3650
/** notBefore is backdated this much so a peer whose clock lags a little still accepts a fresh certificate. */
const BACKDATE_MS = 5 * 60_000
const DAY_MS = 86_400_000
const SERIAL_BYTES = 16

/** ECDSA P-256: MIT PKINIT accepts it (and RSA); it rejects Ed25519 ("invalid digest", RECIPES 7). */
export const EC_KEY_ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const
export const SIGNING_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const

export type CertKind = 'kdc' | 'client'

export interface KeyPairPem {
  readonly keyPem: string
  readonly keys: CryptoKeyPair
}

export interface CaMaterial {
  readonly cert: x509.X509Certificate
  readonly key: CryptoKey
}

function pem(label: string, der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, label)
}

function serial(): string {
  const b = randomBytes(SERIAL_BYTES)
  b[0] = (b[0] ?? 0) & 0x7f // positive INTEGER (RFC 5280 4.1.2.2)
  if (b[0] === 0) b[0] = 1
  return b.toString('hex')
}

/** X.500 order O, OU, CN (the order MIT prints and pkinit_cert_match matches). */
export function subjectName(account: string, cn: string): x509.JsonName {
  return [{ O: [SSO_ORG] }, { OU: [account] }, { CN: [cn] }]
}

/** The pkinit_cert_match text of a subject (MIT 1.20 form: X.500 order, comma separated). */
export function subjectMatchText(account: string, cn: string): string {
  return `O=${SSO_ORG},OU=${account},CN=${cn}`
}

export async function generateKeyPair(): Promise<KeyPairPem> {
  const keys = (await webcrypto.subtle.generateKey(EC_KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)
  return { keys, keyPem: pem('PRIVATE KEY', pkcs8) }
}

/** Imports a PKCS#8 PEM private key (ours are P-256) with its public half. */
export async function importKeyPair(keyPem: string): Promise<CryptoKeyPair> {
  const der = x509.PemConverter.decodeFirst(keyPem)
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, EC_KEY_ALG, true, ['sign'])
  const jwk = await webcrypto.subtle.exportKey('jwk', privateKey)
  const { d: _d, ...pub } = jwk
  const publicKey = await webcrypto.subtle.importKey('jwk', { ...pub, key_ops: ['verify'] }, EC_KEY_ALG, true, [
    'verify',
  ])
  return { privateKey, publicKey } as CryptoKeyPair
}

/** A new account CA: P-256 key and self-signed certificate. */
export async function createAccountCa(
  account: string,
  domain: string,
  now = Date.now(),
): Promise<{
  certPem: string
  keyPem: string
}> {
  const { keys, keyPem } = await generateKeyPair()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subjectName(account, `autotunnel account CA ${domain}`),
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + CA_DAYS * DAY_MS),
    signingAlgorithm: SIGNING_ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return { certPem: cert.toString('pem'), keyPem }
}

export async function loadCa(certPem: string, keyPem: string): Promise<CaMaterial> {
  return { cert: new x509.X509Certificate(certPem), key: (await importKeyPair(keyPem)).privateKey }
}

export interface IssueParams {
  readonly ca: CaMaterial
  readonly kind: CertKind
  /** The subject public key (from a verified CSR). */
  readonly publicKey: x509.PublicKey
  readonly account: string
  /** The host's FQDN without trailing dot, lower case (CN, and dNSName of a KDC certificate). */
  readonly fqdn: string
  /** kdc: [krbtgt/REALM@REALM]; client: the owner's principal in each realm. */
  readonly principals: readonly KrbPrincipal[]
  readonly now?: number
  readonly days?: number
}

/** The KDC's own principal in its realm (RFC 4556 3.2.3: the KDC certificate names krbtgt/REALM@REALM). */
export function krbtgtPrincipal(realm: string): KrbPrincipal {
  return { nameType: NameType.NT_SRV_INST, components: ['krbtgt', realm], realm }
}

export function ownerPrincipal(account: string, realm: string): KrbPrincipal {
  return { nameType: NameType.NT_PRINCIPAL, components: [account], realm }
}

/** Issues a KDC or client certificate under the account CA. Inputs are trusted here: the enrolment checks them. */
export async function issueCertificate(p: IssueParams): Promise<string> {
  const now = p.now ?? Date.now()
  const days = p.days ?? DEFAULT_CERT_DAYS
  const san: SanEntry[] = p.principals.map((principal) => ({ kind: 'principal', principal }))
  if (p.kind === 'kdc') san.push({ kind: 'dns', name: p.fqdn })
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: subjectName(p.account, p.fqdn),
    issuer: p.ca.cert.subjectName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(Math.min(now + days * DAY_MS, p.ca.cert.notAfter.getTime())),
    signingAlgorithm: SIGNING_ALG,
    publicKey: p.publicKey,
    signingKey: p.ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([p.kind === 'kdc' ? ID_PKINIT_KP_KDC : ID_PKINIT_KP_CLIENT_AUTH], false),
      new x509.Extension(ID_CE_SUBJECT_ALT_NAME, false, encodeSubjectAltName(san)),
      await x509.SubjectKeyIdentifierExtension.create(p.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(p.ca.cert, false),
    ],
  })
  return cert.toString('pem')
}

/** A CSR for `kind` signed by `keys`; the SAN lists the principals asked for (the server decides what it grants). */
export async function createCsr(o: {
  keys: CryptoKeyPair
  account: string
  fqdn: string
  principals: readonly KrbPrincipal[]
}): Promise<Buffer> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: subjectName(o.account, o.fqdn),
    keys: o.keys,
    signingAlgorithm: SIGNING_ALG,
    extensions: [
      new x509.Extension(
        ID_CE_SUBJECT_ALT_NAME,
        false,
        encodeSubjectAltName(o.principals.map((principal) => ({ kind: 'principal', principal }))),
      ),
    ],
  })
  return Buffer.from(csr.rawData)
}

export type { CryptoKey, CryptoKeyPair }
export { x509 }
