// The SSO enrolment codec (docs/sso.md, "Enrolment"): certificate requests and answers carried in DNS, signed with
// the account's TSIG key (RFC 8945), so the channel needs no credential beyond the one every host already holds.
//
//   UPDATE (RFC 2136), zone = provider zone, update section = exactly one RR:
//     _autotunnel-enrol.HOST.USER.ZONE  IN ATENROL   ver(1) kind(1) csr(DER PKCS#10, RFC 2986)
//                                                    kind 3: an OpenSSH public host key blob instead of a CSR
//     _autotunnel-enrol.HOST.USER.ZONE  IN ATREVOKE  ver(1)           -- `autotunnel revoke HOST`
//   QUERY  _autotunnel-cert.HOST.USER.ZONE  ATCERT  ->  answers  ver(1) kind(1) cert(DER X.509, RFC 5280)
//          one per kind: 0 = the account CA (the trust anchor), 1 = KDC, 2 = client, 3 = OpenSSH host certificate
//
// The three types are in RFC 6895 3.1's private-use range (65280-65534), so no resolver or server on the path
// gives them a meaning. Refusals carry an RFC 8914 Extended DNS Error whose EXTRA-TEXT says what was wrong.

export const SsoRRType = { ATENROL: 65300, ATCERT: 65301, ATREVOKE: 65302 } as const
export const ENROL_LABEL = '_autotunnel-enrol'
export const CERT_LABEL = '_autotunnel-cert'
export const ENROL_VERSION = 1
export const CertKindCode = { CA: 0, KDC: 1, CLIENT: 2, SSH_HOST: 3 } as const
export type CertKindCode = (typeof CertKindCode)[keyof typeof CertKindCode]

export { decodeExtendedError, ExtendedError, encodeExtendedError } from '../dns/ede.js'

/** A CSR of more than this is not one of ours (a P-256 CSR with 64 realms is about 3 KB). */
export const MAX_CSR = 8192
const HDR = 2

export class EnrolCodecError extends Error {
  override readonly name = 'EnrolCodecError'
}

export interface EnrolRequest {
  readonly kind: typeof CertKindCode.KDC | typeof CertKindCode.CLIENT | typeof CertKindCode.SSH_HOST
  /** The DER CSR; for SSH_HOST the OpenSSH public key blob (RFC 4253 6.6) of the host key to certify. */
  readonly csr: Buffer
}

export function encodeEnrolRdata(r: EnrolRequest): Buffer {
  return Buffer.concat([Buffer.from([ENROL_VERSION, r.kind]), r.csr])
}

export function decodeEnrolRdata(raw: Buffer): EnrolRequest {
  if (raw.length < HDR) throw new EnrolCodecError(`ATENROL RDATA of ${raw.length} octets: want version, kind, CSR`)
  if (raw[0] !== ENROL_VERSION) throw new EnrolCodecError(`ATENROL version ${raw[0]}, want ${ENROL_VERSION}`)
  const kind = raw[1]
  if (kind !== CertKindCode.KDC && kind !== CertKindCode.CLIENT && kind !== CertKindCode.SSH_HOST)
    throw new EnrolCodecError(`ATENROL kind ${kind}: want 1 (KDC), 2 (client) or 3 (SSH host key)`)
  const csr = raw.subarray(HDR)
  if (csr.length === 0) throw new EnrolCodecError('ATENROL carries no CSR')
  if (csr.length > MAX_CSR) throw new EnrolCodecError(`CSR of ${csr.length} octets, at most ${MAX_CSR}`)
  return { kind, csr: Buffer.from(csr) }
}

export function encodeRevokeRdata(): Buffer {
  return Buffer.from([ENROL_VERSION])
}

export function decodeRevokeRdata(raw: Buffer): void {
  if (raw.length !== 1 || raw[0] !== ENROL_VERSION) throw new EnrolCodecError('ATREVOKE RDATA: want one version octet')
}

export interface CertAnswer {
  readonly kind: CertKindCode
  readonly der: Buffer
}

export function encodeCertRdata(c: CertAnswer): Buffer {
  return Buffer.concat([Buffer.from([ENROL_VERSION, c.kind]), c.der])
}

export function decodeCertRdata(raw: Buffer): CertAnswer {
  if (raw.length <= HDR || raw[0] !== ENROL_VERSION) throw new EnrolCodecError('ATCERT RDATA: bad length or version')
  const kind = raw[1]
  if (
    kind !== CertKindCode.CA &&
    kind !== CertKindCode.KDC &&
    kind !== CertKindCode.CLIENT &&
    kind !== CertKindCode.SSH_HOST
  )
    throw new EnrolCodecError(`ATCERT kind ${kind}`)
  return { kind, der: Buffer.from(raw.subarray(HDR)) }
}

export function enrolName(host: string, domain: string): string {
  return `${ENROL_LABEL}.${host}.${fqdn(domain)}`
}

export function certName(host: string, domain: string): string {
  return `${CERT_LABEL}.${host}.${fqdn(domain)}`
}

function fqdn(n: string): string {
  return n.endsWith('.') ? n.toLowerCase() : `${n.toLowerCase()}.`
}

/** Splits PREFIX.HOST.USER.ZONE (any case) into host and user, or undefined when the name has another shape. */
export function parseSsoName(
  name: string,
  prefix: string,
  zone: string,
): { readonly host: string; readonly user: string } | undefined {
  const n = fqdn(name)
  const z = fqdn(zone)
  if (!n.endsWith(`.${z}`)) return undefined
  const labels = n.slice(0, n.length - z.length - 1).split('.')
  if (labels.length !== 3 || labels[0] !== prefix) return undefined
  const [, host, user] = labels
  if (!host || !user) return undefined
  return { host, user }
}
