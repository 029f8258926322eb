// RFC 4556 3.2.2: the PKINIT subjectAltName. A certificate names a Kerberos principal in an otherName of type
// id-pkinit-san (1.3.6.1.5.2.2) whose value is a KRB5PrincipalName (RFC 4120 ASN.1 module, EXPLICIT TAGS):
//
//   KRB5PrincipalName ::= SEQUENCE { realm [0] Realm, principalName [1] PrincipalName }
//   PrincipalName     ::= SEQUENCE { name-type [0] Int32, name-string [1] SEQUENCE OF KerberosString }
//
// Realm and KerberosString are GeneralString restricted to IA5 (RFC 4120 5.2.1). The GeneralName is
// otherName [0] IMPLICIT OtherName ::= SEQUENCE { type-id OID, value [0] EXPLICIT ANY } (RFC 5280 4.2.1.6).
import { children, ctx, ctxPrim, DerError, DerTag, expectTlv, oid, oidText, readTlv, tlv } from './der.js'

export const ID_PKINIT_SAN = '1.3.6.1.5.2.2'
/** RFC 4556 3.2.2 and 3.2.3: the extended key usages of PKINIT client and KDC certificates. */
export const ID_PKINIT_KP_CLIENT_AUTH = '1.3.6.1.5.2.3.4'
export const ID_PKINIT_KP_KDC = '1.3.6.1.5.2.3.5'
/** RFC 4120 6.2 name types. */
export const NameType = { NT_PRINCIPAL: 1, NT_SRV_INST: 2 } as const

export interface KrbPrincipal {
  readonly nameType: number
  readonly components: readonly string[]
  readonly realm: string
}

const GENERAL_NAME_OTHER = 0
const GENERAL_NAME_DNS = 2
const MAX_COMPONENTS = 8
const IA5 = /^[\x20-\x7e]+$/

export function principalText(p: KrbPrincipal): string {
  return `${p.components.join('/')}@${p.realm}`
}

function kerberosString(s: string, field: string): Buffer {
  if (!IA5.test(s)) throw new DerError(field, `not a printable IA5 string: ${JSON.stringify(s)}`)
  return tlv(DerTag.GENERAL_STRING, Buffer.from(s, 'ascii'))
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  let i = 0
  while (i < 3 && ((b[i] === 0 && ((b[i + 1] ?? 0) & 0x80) === 0) || (b[i] === 0xff && ((b[i + 1] ?? 0) & 0x80) !== 0)))
    i++
  return tlv(DerTag.INTEGER, b.subarray(i))
}

/** DER of KRB5PrincipalName. */
export function encodeKrb5PrincipalName(p: KrbPrincipal): Buffer {
  if (p.components.length === 0) throw new DerError('name-string', 'no components')
  return tlv(
    DerTag.SEQUENCE,
    tlv(ctx(0), kerberosString(p.realm, 'realm')),
    tlv(
      ctx(1),
      tlv(
        DerTag.SEQUENCE,
        tlv(ctx(0), int32(p.nameType)),
        tlv(ctx(1), tlv(DerTag.SEQUENCE, ...p.components.map((c) => kerberosString(c, 'name-string')))),
      ),
    ),
  )
}

function readKerberosString(t: { tag: number; value: Buffer }, field: string): string {
  if (t.tag !== DerTag.GENERAL_STRING) throw new DerError(field, 'not a GeneralString')
  const s = t.value.toString('latin1')
  if (!IA5.test(s)) throw new DerError(field, 'not a printable IA5 string')
  return s
}

/** Parses a DER KRB5PrincipalName (the whole buffer). */
export function decodeKrb5PrincipalName(der: Buffer): KrbPrincipal {
  const outer = expectTlv(der, 0, DerTag.SEQUENCE, 'KRB5PrincipalName')
  if (outer.next !== der.length) throw new DerError('KRB5PrincipalName', 'trailing data')
  const [r, pn, extra] = children(outer.value, 'KRB5PrincipalName')
  if (!r || !pn || extra || r.tag !== ctx(0) || pn.tag !== ctx(1))
    throw new DerError('KRB5PrincipalName', 'want [0] realm, [1] principalName')
  const realmTlv = readTlv(r.value, 0, 'realm')
  if (realmTlv.next !== r.value.length) throw new DerError('realm', 'trailing data')
  const realm = readKerberosString(realmTlv, 'realm')
  const seq = expectTlv(pn.value, 0, DerTag.SEQUENCE, 'principalName')
  const [nt, ns, extra2] = children(seq.value, 'principalName')
  if (!nt || !ns || extra2 || nt.tag !== ctx(0) || ns.tag !== ctx(1))
    throw new DerError('principalName', 'want [0] name-type, [1] name-string')
  const int = expectTlv(nt.value, 0, DerTag.INTEGER, 'name-type')
  if (int.value.length === 0 || int.value.length > 4) throw new DerError('name-type', 'not an Int32')
  const nameType = int.value.readIntBE(0, int.value.length)
  const names = children(expectTlv(ns.value, 0, DerTag.SEQUENCE, 'name-string').value, 'name-string')
  if (names.length === 0 || names.length > MAX_COMPONENTS) throw new DerError('name-string', 'bad component count')
  return { nameType, realm, components: names.map((c) => readKerberosString(c, 'name-string')) }
}

/** A GeneralName the SSO profiles use: a PKINIT principal, a DNS name, or anything else (kept opaque). */
export type SanEntry =
  | { readonly kind: 'principal'; readonly principal: KrbPrincipal }
  | { readonly kind: 'dns'; readonly name: string }
  | { readonly kind: 'other'; readonly tag: number; readonly typeId?: string }

/** DER of the subjectAltName extension value (GeneralNames) holding `entries` (principal and dns only). */
export function encodeSubjectAltName(entries: readonly SanEntry[]): Buffer {
  const names = entries.map((e) => {
    if (e.kind === 'principal')
      return tlv(ctx(GENERAL_NAME_OTHER), oid(ID_PKINIT_SAN), tlv(ctx(0), encodeKrb5PrincipalName(e.principal)))
    if (e.kind === 'dns') return tlv(ctxPrim(GENERAL_NAME_DNS), Buffer.from(e.name, 'ascii'))
    throw new DerError('GeneralName', 'only principal and dns names are built')
  })
  return tlv(DerTag.SEQUENCE, ...names)
}

/** Parses a subjectAltName extension value; PKINIT otherNames are decoded, other names kept as 'other'. */
export function decodeSubjectAltName(der: Buffer): SanEntry[] {
  const outer = expectTlv(der, 0, DerTag.SEQUENCE, 'GeneralNames')
  if (outer.next !== der.length) throw new DerError('GeneralNames', 'trailing data')
  return children(outer.value, 'GeneralName').map((g): SanEntry => {
    if (g.tag === ctx(GENERAL_NAME_OTHER)) {
      const typeId = expectTlv(g.value, 0, DerTag.OID, 'otherName.type-id')
      const id = oidText(typeId.value)
      const v = expectTlv(g.value, typeId.next, ctx(0), 'otherName.value')
      if (v.next !== g.value.length) throw new DerError('otherName', 'trailing data')
      if (id !== ID_PKINIT_SAN) return { kind: 'other', tag: g.tag, typeId: id }
      return { kind: 'principal', principal: decodeKrb5PrincipalName(v.value) }
    }
    if (g.tag === ctxPrim(GENERAL_NAME_DNS)) {
      const name = g.value.toString('latin1')
      if (!IA5.test(name)) throw new DerError('dNSName', 'not IA5')
      return { kind: 'dns', name }
    }
    return { kind: 'other', tag: g.tag }
  })
}
