// Seeds of the IKE and ESP targets (see seeds.ts): messages our encoders produce, framed as the targets expect.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  AuthMethod,
  ExchangeType,
  HeaderFlag,
  IdType,
  NotifyType,
  PayloadType,
  ProtocolId,
} from '../../src/ike/constants.js'
import { encodeMessage, encodePayloads } from '../../src/ike/message.js'
import type { Payload } from '../../src/ike/payloads.js'
import { tsForHost } from '../../src/ike/payloads.js'
import { childProposal, DEFAULT_CHILD_POLICY, DEFAULT_IKE_POLICY, ikeProposal } from '../../src/ike/proposals.js'
import { CertKindCode, encodeCertRdata, encodeEnrolRdata } from '../../src/sso/enrol-codec.js'
import { encodeKrb5PrincipalName, encodeSubjectAltName, NameType } from '../../src/sso/krb5-name.js'
import { encodeStun, encodeXorAddress, StunAttr } from '../../src/traversal/stun.js'
import { encodeChannelData, StunClass, TurnMethod } from '../../src/traversal/turn-wire.js'
import { NON_ESP_MARKER_LEN } from '../../src/tunnel/udp-encap.js'

const FIXTURES = fileURLToPath(new URL('../../../test/fuzz/fixtures/', import.meta.url))

const SPI_I = Buffer.alloc(8, 0x11)
const SPI_R = Buffer.alloc(8, 0x22)
const at = (sel: number, b: Buffer) => Buffer.concat([Buffer.from([sel]), b])

function ikeSeeds(): Record<string, Buffer> {
  const init: Payload[] = [
    { type: PayloadType.SA, proposals: [ikeProposal(DEFAULT_IKE_POLICY)] },
    { type: PayloadType.KE, group: 31, data: Buffer.alloc(32, 9) },
    { type: PayloadType.NONCE, data: Buffer.alloc(32, 8) },
    {
      type: PayloadType.NOTIFY,
      protocolId: 0,
      spi: Buffer.alloc(0),
      notifyType: NotifyType.NAT_DETECTION_SOURCE_IP,
      data: Buffer.alloc(20, 1),
    },
    {
      type: PayloadType.NOTIFY,
      protocolId: 0,
      spi: Buffer.alloc(0),
      notifyType: NotifyType.SIGNATURE_HASH_ALGORITHMS,
      data: Buffer.from([0, 2, 0, 5]),
    },
    { type: 43, opaque: true, critical: false, body: Buffer.from('vendor') },
  ]
  const auth: Payload[] = [
    { type: PayloadType.IDi, idType: IdType.ID_FQDN, data: Buffer.from('a.fuzz.example') },
    { type: PayloadType.AUTH, method: AuthMethod.DIGITAL_SIGNATURE, data: Buffer.alloc(40, 2) },
    { type: PayloadType.SA, proposals: [childProposal(DEFAULT_CHILD_POLICY, Buffer.from([1, 2, 3, 4]), false)] },
    { type: PayloadType.TSi, selectors: [tsForHost('fd00:a::1')] },
    { type: PayloadType.TSr, selectors: [tsForHost('fd00:b::1'), tsForHost('192.0.2.1')] },
    {
      type: PayloadType.NOTIFY,
      protocolId: 0,
      spi: Buffer.alloc(0),
      notifyType: NotifyType.USE_TRANSPORT_MODE,
      data: Buffer.alloc(0),
    },
  ]
  const info: Payload[] = [
    { type: PayloadType.DELETE, protocolId: ProtocolId.ESP, spiSize: 4, spis: [Buffer.from([1, 2, 3, 4])] },
  ]
  const header = {
    spiI: SPI_I,
    spiR: Buffer.alloc(8),
    exchangeType: ExchangeType.IKE_SA_INIT,
    flags: HeaderFlag.INITIATOR,
    messageId: 0,
  }
  const inner = (payloads: Payload[], padLen = 0) => {
    const { bytes, first } = encodePayloads(payloads)
    return at(1, Buffer.concat([Buffer.from([first]), bytes, Buffer.alloc(padLen), Buffer.from([padLen])]))
  }
  return {
    'sa-init': at(0, encodeMessage(header, init)),
    'sa-init-response': at(0, encodeMessage({ ...header, spiR: SPI_R, flags: HeaderFlag.RESPONSE }, init)),
    'auth-inner': inner(auth),
    'auth-inner-padded': inner(auth, 3),
    'delete-inner': inner(info),
  }
}

function espSeeds(): Record<string, Buffer> {
  const ipv6 = Buffer.alloc(40 + 8)
  ipv6[0] = 0x60
  ipv6.writeUInt16BE(8, 4)
  ipv6[6] = 17
  ipv6[7] = 64
  Buffer.from('fd00000b000000000000000000000001', 'hex').copy(ipv6, 8)
  Buffer.from('fd00000a000000000000000000000001', 'hex').copy(ipv6, 24)
  // Payload, padding 1..2 to a multiple of 4 with the 2-octet trailer, pad length 2, next header 41 (IPv6).
  const sealedPlain = (seq: number) => {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(seq, 0)
    return Buffer.concat([b, ipv6, Buffer.from([1, 2, 2, 41])])
  }
  const ike = encodeMessage(
    {
      spiI: SPI_I,
      spiR: Buffer.alloc(8),
      exchangeType: ExchangeType.IKE_SA_INIT,
      flags: HeaderFlag.INITIATOR,
      messageId: 0,
    },
    [{ type: PayloadType.NONCE, data: Buffer.alloc(32, 8) }],
  )
  const dataIndication = encodeStun(TurnMethod.DATA | StunClass.INDICATION, Buffer.alloc(12, 5), [
    { type: StunAttr.XOR_PEER_ADDRESS, value: encodeXorAddress({ address: '198.51.100.20', port: 4500 }) },
    { type: StunAttr.DATA, value: Buffer.from([0xff]) },
  ])
  return {
    'sealed-ipv6': at(1, sealedPlain(1)),
    'sealed-ipv6-esn': at(1 | 4, sealedPlain(7)),
    keepalive: at(0, Buffer.from([0xff])),
    'ike-marker': at(0, Buffer.concat([Buffer.alloc(NON_ESP_MARKER_LEN), ike])),
    'esp-unknown-spi': at(0, Buffer.concat([Buffer.from([0, 0, 0x10, 0]), Buffer.alloc(60, 1)])),
    'relay-data-indication': at(2, dataIndication),
    'relay-channel-data': at(2, encodeChannelData(0x4000, Buffer.from([0xff]))),
  }
}

/** SSO enrolment: CSRs our encoder made (test/fuzz/fixtures), in ATENROL RDATA and alone as their SAN pieces. */
function ssoSeeds(): Record<string, Buffer> {
  const fixture = (f: string) => readFileSync(join(FIXTURES, f))
  const at = (sel: number, b: Buffer) => Buffer.concat([Buffer.from([sel]), b])
  const kdc = fixture('sso-kdc-csr.der')
  const client = fixture('sso-client-csr.der')
  const alice = { nameType: NameType.NT_PRINCIPAL, components: ['alice'], realm: 'LAPTOP.ALICE.MEMBERS.EXAMPLE' }
  return {
    'enrol-kdc': at(0, encodeEnrolRdata({ kind: CertKindCode.KDC, csr: kdc })),
    'enrol-client': at(0, encodeEnrolRdata({ kind: CertKindCode.CLIENT, csr: client })),
    san: at(
      1,
      encodeSubjectAltName([
        { kind: 'principal', principal: alice },
        { kind: 'dns', name: 'laptop.x' },
      ]),
    ),
    principal: at(2, encodeKrb5PrincipalName(alice)),
    'cert-rdata': at(3, encodeCertRdata({ kind: CertKindCode.CLIENT, der: client })),
    name: at(3, Buffer.from('_autotunnel-enrol.laptop.alice.members.example.')),
  }
}

export const extraSeeds: Record<string, () => Record<string, Buffer>> = { ike: ikeSeeds, esp: espSeeds, sso: ssoSeeds }
