// SA proposals and their negotiation (RFC 7296 2.7, 3.3.6): we offer and accept only AEAD ciphers
// (RFC 5282: no integrity transform), PRF HMAC-SHA2 and groups 31, 19, 20; for ESP AES-GCM-16 and
// ChaCha20-Poly1305 with or without ESN (3.3.2 Transform Type 5).

import { DhGroup, EncrId, EsnId, PrfId, ProtocolId, TransformType } from './constants.js'
import { type AeadSpec, aeadFor, type PrfSpec, prfFor, SUPPORTED_DH_GROUPS } from './crypto.js'
import type { Proposal, Transform } from './payloads.js'

/** Names as strongSwan's proposal keywords spell them (also the tunnel's EspAlg). */
export type CipherName = 'aes128gcm16' | 'aes256gcm16' | 'chacha20poly1305'

const AES128 = 128
const AES256 = 256
const CIPHER_TRANSFORMS: Record<CipherName, Transform> = {
  aes128gcm16: { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: AES128 },
  aes256gcm16: { type: TransformType.ENCR, id: EncrId.AES_GCM_16, keyLength: AES256 },
  chacha20poly1305: { type: TransformType.ENCR, id: EncrId.CHACHA20_POLY1305 },
}

export function cipherName(a: AeadSpec): CipherName {
  if (a.encrId === EncrId.CHACHA20_POLY1305) return 'chacha20poly1305'
  return a.keyBits === AES256 ? 'aes256gcm16' : 'aes128gcm16'
}

export interface IkePolicy {
  readonly ciphers: readonly CipherName[]
  readonly prfs: readonly number[]
  readonly groups: readonly number[]
}
export interface ChildPolicy {
  readonly ciphers: readonly CipherName[]
  /** In order of preference; [true, false] offers ESN first and accepts either. */
  readonly esn: readonly boolean[]
  /** Groups for PFS in CREATE_CHILD_SA; empty disables PFS. */
  readonly pfsGroups: readonly number[]
}

export const DEFAULT_IKE_POLICY: IkePolicy = {
  ciphers: ['aes256gcm16', 'aes128gcm16', 'chacha20poly1305'],
  prfs: [PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384, PrfId.HMAC_SHA2_512],
  groups: [DhGroup.CURVE25519, DhGroup.ECP_256, DhGroup.ECP_384],
}
export const DEFAULT_CHILD_POLICY: ChildPolicy = {
  ciphers: ['aes128gcm16', 'aes256gcm16', 'chacha20poly1305'],
  esn: [true, false],
  pfsGroups: [DhGroup.CURVE25519, DhGroup.ECP_256, DhGroup.ECP_384],
}

export interface IkeSuite {
  readonly aead: AeadSpec
  readonly prf: PrfSpec
  readonly group: number
}
export interface ChildSuite {
  readonly aead: AeadSpec
  readonly esn: boolean
  /** DH group for PFS, or DhGroup.NONE. */
  readonly group: number
}

export function ikeProposal(p: IkePolicy, spi: Buffer = Buffer.alloc(0)): Proposal {
  return {
    num: 1,
    protocolId: ProtocolId.IKE,
    spi,
    transforms: [
      ...p.ciphers.map((c) => CIPHER_TRANSFORMS[c]),
      ...p.prfs.map((id) => ({ type: TransformType.PRF, id })),
      ...p.groups.map((id) => ({ type: TransformType.DH, id })),
    ],
  }
}

export function childProposal(p: ChildPolicy, spi: Buffer, pfs: boolean): Proposal {
  return {
    num: 1,
    protocolId: ProtocolId.ESP,
    spi,
    transforms: [
      ...p.ciphers.map((c) => CIPHER_TRANSFORMS[c]),
      ...(pfs ? p.pfsGroups.map((id) => ({ type: TransformType.DH, id })) : []),
      ...p.esn.map((e) => ({ type: TransformType.ESN, id: e ? EsnId.ESN : EsnId.NO_ESN })),
    ],
  }
}

function byType(p: Proposal, type: number): Transform[] {
  return p.transforms.filter((t) => t.type === type)
}

/** An AEAD proposal may list INTEG only as NONE (RFC 5282 section 8). */
function integOk(p: Proposal): boolean {
  return byType(p, TransformType.INTEG).every((t) => t.id === 0)
}

function pickCipher(p: Proposal, ours: readonly CipherName[]): AeadSpec | undefined {
  for (const t of byType(p, TransformType.ENCR)) {
    const a = aeadFor(t.id, t.keyLength)
    if (a && ours.includes(cipherName(a))) return a
  }
  return undefined
}

/** Responder choice for IKE_SA_INIT (and IKE SA rekey): the first peer proposal we can fully accept. */
export function selectIke(
  offered: readonly Proposal[],
  policy: IkePolicy,
): { proposal: Proposal; suite: IkeSuite } | undefined {
  for (const p of offered) {
    if (p.protocolId !== ProtocolId.IKE || !integOk(p)) continue
    const aead = pickCipher(p, policy.ciphers)
    const prfT = byType(p, TransformType.PRF).find((t) => policy.prfs.includes(t.id) && prfFor(t.id))
    const groups = byType(p, TransformType.DH).map((t) => t.id)
    const group = groups.find((g) => policy.groups.includes(g) && SUPPORTED_DH_GROUPS.includes(g))
    if (!aead || !prfT || group === undefined) continue
    const prf = prfFor(prfT.id)!
    return { proposal: ikeResponseProposal(p.num, p.spi, aead, prf.prfId, group), suite: { aead, prf, group } }
  }
  return undefined
}

export function ikeResponseProposal(num: number, spi: Buffer, aead: AeadSpec, prfId: number, group: number): Proposal {
  return {
    num,
    protocolId: ProtocolId.IKE,
    spi,
    transforms: [
      aead.keyBits === undefined
        ? { type: TransformType.ENCR, id: aead.encrId }
        : { type: TransformType.ENCR, id: aead.encrId, keyLength: aead.keyBits },
      { type: TransformType.PRF, id: prfId },
      { type: TransformType.DH, id: group },
    ],
  }
}

/**
 * Responder choice for an ESP Child SA. `kePresent` tells whether the request carried KE: then a DH
 * transform must be chosen (PFS); without KE the proposal must allow NONE or omit DH (3.3.2).
 */
export function selectChild(
  offered: readonly Proposal[],
  policy: ChildPolicy,
  keGroup: number | undefined,
  ourSpi: Buffer,
): { proposal: Proposal; suite: ChildSuite; peerSpi: Buffer } | undefined {
  for (const p of offered) {
    if (p.protocolId !== ProtocolId.ESP || p.spi.length !== 4 || !integOk(p)) continue
    const aead = pickCipher(p, policy.ciphers)
    if (!aead) continue
    const esnOffered = byType(p, TransformType.ESN).map((t) => t.id === EsnId.ESN)
    const esn = policy.esn.find((e) => (esnOffered.length === 0 ? e === false : esnOffered.includes(e)))
    if (esn === undefined) continue
    const dh = byType(p, TransformType.DH).map((t) => t.id)
    let group: number = DhGroup.NONE
    if (keGroup !== undefined) {
      if (!dh.includes(keGroup) || !policy.pfsGroups.includes(keGroup)) continue
      group = keGroup
    } else if (dh.length > 0 && !dh.includes(DhGroup.NONE)) continue
    const transforms: Transform[] = [
      aead.keyBits === undefined
        ? { type: TransformType.ENCR, id: aead.encrId }
        : { type: TransformType.ENCR, id: aead.encrId, keyLength: aead.keyBits },
      ...(group !== DhGroup.NONE ? [{ type: TransformType.DH, id: group }] : []),
      { type: TransformType.ESN, id: esn ? EsnId.ESN : EsnId.NO_ESN },
    ]
    return {
      proposal: { num: p.num, protocolId: ProtocolId.ESP, spi: ourSpi, transforms },
      suite: { aead, esn, group },
      peerSpi: p.spi,
    }
  }
  return undefined
}

/** Initiator side: checks that the single proposal the responder returned is one we offered. */
export function acceptIkeResponse(p: Proposal | undefined, policy: IkePolicy): IkeSuite | undefined {
  if (!p || p.protocolId !== ProtocolId.IKE || !integOk(p)) return undefined
  const enc = byType(p, TransformType.ENCR)
  const prfs = byType(p, TransformType.PRF)
  const dhs = byType(p, TransformType.DH)
  if (enc.length !== 1 || prfs.length !== 1 || dhs.length !== 1) return undefined
  const aead = aeadFor(enc[0]!.id, enc[0]!.keyLength)
  const prf = prfFor(prfs[0]!.id)
  const group = dhs[0]!.id
  if (!aead || !policy.ciphers.includes(cipherName(aead)) || !prf || !policy.prfs.includes(prf.prfId)) return undefined
  if (!policy.groups.includes(group)) return undefined
  return { aead, prf, group }
}

export function acceptChildResponse(
  p: Proposal | undefined,
  policy: ChildPolicy,
  pfsGroup: number,
): { suite: ChildSuite; peerSpi: Buffer } | undefined {
  if (!p || p.protocolId !== ProtocolId.ESP || p.spi.length !== 4 || !integOk(p)) return undefined
  const enc = byType(p, TransformType.ENCR)
  const esn = byType(p, TransformType.ESN)
  const dh = byType(p, TransformType.DH).filter((t) => t.id !== DhGroup.NONE)
  if (enc.length !== 1 || esn.length > 1 || dh.length > 1) return undefined
  const aead = aeadFor(enc[0]!.id, enc[0]!.keyLength)
  if (!aead || !policy.ciphers.includes(cipherName(aead))) return undefined
  const e = esn[0]?.id === EsnId.ESN
  if (!policy.esn.includes(e)) return undefined
  const group = dh[0]?.id ?? DhGroup.NONE
  if (group !== pfsGroup) return undefined
  return { suite: { aead, esn: e, group }, peerSpi: p.spi }
}
