// What the account CA signs (docs/sso.md, "Enrolment"): a CSR is proof of possession of a key; the certificate's
// names come from the request's owner name (the host) and the signer's account, and the CSR's own names are only
// checked against them: every name a CSR asks for must lie inside the signer's subdomain, or nothing is issued.
import { ID_CE_SUBJECT_ALT_NAME, krbtgtPrincipal, x509 } from './certs.js'
import { DerError } from './der.js'
import { CertKindCode } from './enrol-codec.js'
import { decodeSubjectAltName, type KrbPrincipal, NameType, principalText } from './krb5-name.js'

export type EnrolRefusal = 'bad-csr' | 'foreign-name' | 'foreign-key' | 'unsigned' | 'revoked' | 'malformed'

export class EnrolError extends Error {
  override readonly name = 'EnrolError'
  constructor(
    readonly reason: EnrolRefusal,
    message: string,
  ) {
    super(message)
  }
}

const HOST_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
/** A client certificate names the owner in at most this many host realms. */
export const MAX_CLIENT_REALMS = 64
const MIN_RSA_BITS = 2048
const EC_CURVES = new Set(['P-256', 'P-384', 'P-521'])

export function realmOf(fqdn: string): string {
  return fqdn.replace(/\.$/, '').toUpperCase()
}

export interface CsrVerdict {
  readonly publicKey: x509.PublicKey
  readonly principals: KrbPrincipal[]
  /** The host's FQDN, lower case, no trailing dot. */
  readonly fqdn: string
}

export interface CsrParams {
  csr: Buffer
  kind: number
  account: string
  domain: string
  host: string
}

/**
 * Checks a CSR for `kind` from `host` of `account` whose domain is `domain` (USER.ZONE, no trailing dot), signature
 * included. KDC: the certificate names krbtgt/REALM@REALM of the host's own realm. Client: the owner principal
 * `account` in each realm the CSR asks for, each realm being one of the account's host names upper-cased (default:
 * the host's own realm). Throws EnrolError.
 */
export async function checkCsr(o: CsrParams): Promise<CsrVerdict> {
  const { verdict, req } = inspectCsr(o)
  let ok = false
  try {
    ok = await req.verify()
  } catch (e) {
    throw new EnrolError('bad-csr', `CSR signature cannot be checked: ${(e as Error).message}`)
  }
  if (!ok) throw new EnrolError('bad-csr', 'CSR self-signature does not verify (no proof of possession)')
  return verdict
}

/** Everything checkCsr checks except the signature (synchronous: the fuzz target drives it). Throws EnrolError. */
export function inspectCsr(o: CsrParams): { verdict: CsrVerdict; req: x509.Pkcs10CertificateRequest } {
  const domain = o.domain.replace(/\.$/, '').toLowerCase()
  if (!HOST_LABEL.test(o.host)) throw new EnrolError('foreign-name', `host ${JSON.stringify(o.host)} is not one label`)
  const fqdn = `${o.host}.${domain}`
  let req: x509.Pkcs10CertificateRequest
  let alg: { name?: string; namedCurve?: string; modulusLength?: number }
  let cns: string[]
  let sanDer: Buffer | undefined
  try {
    // The ASN.1 library throws its own errors for malformed input: all of them are a bad CSR here.
    req = new x509.Pkcs10CertificateRequest(o.csr)
    alg = req.publicKey.algorithm as typeof alg
    cns = req.subjectName.getField('CN')
    const ext = req.getExtension(ID_CE_SUBJECT_ALT_NAME)
    sanDer = ext ? Buffer.from(ext.value) : undefined
  } catch (e) {
    throw new EnrolError('bad-csr', `CSR does not parse as PKCS#10: ${(e as Error)?.message ?? String(e)}`)
  }
  const keyOk =
    (alg.name === 'ECDSA' && EC_CURVES.has(alg.namedCurve ?? '')) ||
    (alg.name === 'RSASSA-PKCS1-v1_5' && (alg.modulusLength ?? 0) >= MIN_RSA_BITS)
  if (!keyOk)
    throw new EnrolError(
      'bad-csr',
      `CSR key ${alg.name ?? '?'} ${alg.namedCurve ?? alg.modulusLength ?? ''}: MIT PKINIT needs ECDSA P-256/384/521 or RSA >= 2048 (not Ed25519)`,
    )
  for (const cn of cns)
    if (cn.toLowerCase() !== fqdn)
      throw new EnrolError('foreign-name', `CSR subject CN ${JSON.stringify(cn)} is not this host (${fqdn})`)
  const verdict = namesOf(o, fqdn, domain, sanDer)
  return { verdict: { ...verdict, publicKey: req.publicKey }, req }
}

function namesOf(
  o: CsrParams,
  fqdn: string,
  domain: string,
  sanDer: Buffer | undefined,
): Omit<CsrVerdict, 'publicKey'> {
  let asked: KrbPrincipal[] = []
  if (sanDer) {
    let san: ReturnType<typeof decodeSubjectAltName>
    try {
      san = decodeSubjectAltName(sanDer)
    } catch (e) {
      throw new EnrolError('bad-csr', `CSR subjectAltName: ${e instanceof DerError ? e.message : String(e)}`)
    }
    for (const e of san) {
      if (e.kind === 'dns') {
        if (e.name.toLowerCase() !== fqdn)
          throw new EnrolError('foreign-name', `CSR asks for DNS name ${e.name}, not this host (${fqdn})`)
      } else if (e.kind === 'other') throw new EnrolError('foreign-name', 'CSR asks for a name type we do not issue')
      else asked.push(e.principal)
    }
  }

  if (o.kind === CertKindCode.KDC) {
    const own = krbtgtPrincipal(realmOf(fqdn))
    for (const p of asked)
      if (principalText(p) !== principalText(own) || p.nameType !== NameType.NT_SRV_INST)
        throw new EnrolError(
          'foreign-name',
          `KDC CSR asks for ${principalText(p)}; this host's KDC is ${principalText(own)}`,
        )
    return { principals: [own], fqdn }
  }
  if (asked.length === 0) asked = [{ nameType: NameType.NT_PRINCIPAL, components: [o.account], realm: realmOf(fqdn) }]
  if (asked.length > MAX_CLIENT_REALMS)
    throw new EnrolError('bad-csr', `CSR asks for ${asked.length} principals, at most ${MAX_CLIENT_REALMS}`)
  const suffix = `.${domain.toUpperCase()}`
  for (const p of asked) {
    const text = principalText(p)
    if (p.components.length !== 1 || p.components[0] !== o.account || p.nameType !== NameType.NT_PRINCIPAL)
      throw new EnrolError('foreign-name', `client CSR asks for ${text}: only the account owner ${o.account} is issued`)
    const label = p.realm.endsWith(suffix) ? p.realm.slice(0, -suffix.length).toLowerCase() : undefined
    if (label === undefined || !HOST_LABEL.test(label))
      throw new EnrolError('foreign-name', `client CSR asks for realm ${p.realm}, outside ${domain.toUpperCase()}`)
  }
  const principals = asked.filter((p, i) => asked.findIndex((q) => principalText(q) === principalText(p)) === i)
  return { principals, fqdn }
}
