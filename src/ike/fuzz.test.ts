// Fuzzing the receive path (issue 8): 100,000 mutated IKE messages, half mutated on the wire (header,
// lengths, SK ciphertext) and half mutated inside correctly encrypted SK payloads, so the decoders and
// every exchange handler see malformed input. Nothing may throw, nothing may reject unhandled, and
// the engine must keep serving afterwards.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { FakeClock } from '../io/clock.fake.js'
import { FakeNetwork } from '../io/datagram.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { SystemRandom } from '../io/random.js'
import {
  AEAD_ICV_LEN,
  AEAD_IV_LEN,
  HeaderFlag,
  IKE_HEADER_LEN,
  NotifyType,
  PAYLOAD_HEADER_LEN,
  PayloadType,
  ProtocolId,
} from './constants.js'
import { aeadSeal } from './crypto.js'
import { IkeEngine } from './engine.js'
import { generateHostKey } from './hostkey.js'
import { encodePayloads } from './message.js'
import type { Payload } from './payloads.js'
import { tsForHost } from './payloads.js'
import { childProposal, DEFAULT_CHILD_POLICY, DEFAULT_IKE_POLICY, ikeProposal } from './proposals.js'
import type { IkeSa } from './sa.js'
import { UdpIkeTransport } from './transport.js'
import type { PeerInfo } from './types.js'
import { notify } from './util.js'

failOnLeakedResources()

const TOTAL = 100_000
const A = { id: 'a.fuzz.example', ula: 'fd00:a::1', addr: '192.0.2.10' }
const B = { id: 'b.fuzz.example', ula: 'fd00:b::1', addr: '198.51.100.20' }

/** Re-seals `inner` (a payload chain starting with type `first`) as a request on `sa` from its peer. */
function sealAsPeer(sa: IkeSa, exchangeType: number, messageId: number, first: number, inner: Buffer): Buffer {
  const keys = sa.keys!
  const keymat = sa.initiator ? keys.skEr : keys.skEi
  const plaintext = Buffer.concat([inner, Buffer.alloc(1)])
  const skLen = PAYLOAD_HEADER_LEN + AEAD_IV_LEN + plaintext.length + AEAD_ICV_LEN
  const hdr = Buffer.alloc(IKE_HEADER_LEN + PAYLOAD_HEADER_LEN)
  sa.spiI.copy(hdr, 0)
  sa.spiR.copy(hdr, 8)
  hdr.writeUInt8(PayloadType.SK, 16)
  hdr.writeUInt8(0x20, 17)
  hdr.writeUInt8(exchangeType, 18)
  hdr.writeUInt8(sa.initiator ? 0 : HeaderFlag.INITIATOR, 19)
  hdr.writeUInt32BE(messageId, 20)
  hdr.writeUInt32BE(IKE_HEADER_LEN + skLen, 24)
  hdr.writeUInt8(first, IKE_HEADER_LEN)
  hdr.writeUInt16BE(skLen, IKE_HEADER_LEN + 2)
  const iv = Buffer.alloc(AEAD_IV_LEN)
  iv.writeUInt32BE(messageId, 4)
  return Buffer.concat([hdr, iv, aeadSeal(sa.suite!.aead.alg, keymat, iv, hdr, plaintext)])
}

/** A plausible inner payload, often one an exchange handler acts on. */
function innerPayload(r: FakeRandom, sa: IkeSa): Payload {
  const childSpi = sa.children[0] ? Buffer.from(sa.children[0].spiOut.toString(16).padStart(8, '0'), 'hex') : r.bytes(4)
  switch (r.int(12)) {
    case 0:
      return { type: PayloadType.SA, proposals: [childProposal(DEFAULT_CHILD_POLICY, r.bytes(4), r.int(2) === 0)] }
    case 1:
      return { type: PayloadType.SA, proposals: [ikeProposal(DEFAULT_IKE_POLICY, r.bytes(8))] }
    case 2:
      return { type: PayloadType.KE, group: [31, 19, 20, 14][r.int(4)]!, data: r.bytes([32, 64, 96, 5][r.int(4)]!) }
    case 3:
      return { type: PayloadType.NONCE, data: r.bytes(r.int(300)) }
    case 4:
      return {
        type: r.int(2) === 0 ? PayloadType.TSi : PayloadType.TSr,
        selectors: [tsForHost(r.int(2) === 0 ? A.ula : B.ula)],
      }
    case 5:
      return notify(NotifyType.REKEY_SA, Buffer.alloc(0), ProtocolId.ESP, childSpi)
    case 6:
      return notify(
        [NotifyType.UPDATE_SA_ADDRESSES, NotifyType.COOKIE2, NotifyType.NAT_DETECTION_SOURCE_IP][r.int(3)]!,
        r.bytes(r.int(40)),
      )
    case 7:
      return r.int(100) === 0
        ? { type: PayloadType.DELETE, protocolId: ProtocolId.IKE, spiSize: 0, spis: [] }
        : {
            type: PayloadType.DELETE,
            protocolId: ProtocolId.ESP,
            spiSize: 4,
            spis: [r.int(2) === 0 ? childSpi : r.bytes(4)],
          }
    case 8:
      return { type: PayloadType.IDi, idType: 2, data: Buffer.from(A.id) }
    case 9:
      return { type: PayloadType.AUTH, method: [2, 14][r.int(2)]!, data: r.bytes(r.int(80)) }
    case 10:
      return { type: 100 + r.int(150), opaque: true, critical: r.int(4) === 0, body: r.bytes(r.int(20)) }
    default:
      return notify(r.int(65536), r.bytes(r.int(20)), r.int(4), r.bytes(r.int(5)))
  }
}

function mutate(r: FakeRandom, src: Buffer): Buffer {
  const b = Buffer.from(src)
  switch (r.int(6)) {
    case 0:
      return b.subarray(0, r.int(b.length + 1))
    case 1:
      return Buffer.concat([b, r.bytes(1 + r.int(40))])
    case 2: {
      // a length field: the IKE header's or a payload's (2 octets at a 4-aligned offset + 2)
      const at = r.int(2) === 0 ? 24 : 2 + 4 * r.int(Math.max(1, b.length >> 2))
      if (at + 2 <= b.length) b.writeUInt16BE(r.int(0x10000), at)
      return b
    }
    default: {
      const n = 1 + r.int(4)
      for (let i = 0; i < n && b.length > 0; i++) b[r.int(b.length)] = r.int(256)
      return b
    }
  }
}

test(`fuzz: ${TOTAL} mutated IKE messages neither crash nor wedge the engine`, async (t) => {
  const net = new FakeNetwork()
  const clock = new FakeClock()
  const keyA = generateHostKey()
  const keyB = generateHostKey('ecdsa-p256')
  const peers = new Map<string, PeerInfo>([
    [A.id, { id: A.id, ula: A.ula, publicKeys: [keyA.publicKey], endpoint: { address: A.addr, port: 4500 } }],
    [B.id, { id: B.id, ula: B.ula, publicKeys: [keyB.publicKey], endpoint: { address: B.addr, port: 4500 } }],
  ])
  const engines: IkeEngine[] = []
  for (const [me, key] of [
    [A, keyA],
    [B, keyB],
  ] as const) {
    const s = net.socket(me.addr)
    await s.bind(4500)
    t.after(() => s.close())
    const e = new IkeEngine(
      { transport: new UdpIkeTransport(s), clock, random: new SystemRandom(), log: nullLogger },
      {
        localId: me.id,
        localUla: me.ula,
        hostKey: key,
        lookupPeer: async (id) => peers.get(id),
        cookieThreshold: 1000,
      },
    )
    t.after(() => e.close())
    engines.push(e)
  }
  const [a, b] = engines as [IkeEngine, IkeEngine]
  let unhandled = 0
  const onUnhandled = (): void => {
    unhandled++
  }
  process.on('unhandledRejection', onUnhandled)
  t.after(() => process.off('unhandledRejection', onUnhandled))

  const corpus: Buffer[] = []
  net.dropIf = (_f, _t, m) => {
    if (corpus.length < 64) corpus.push(Buffer.from(m.subarray(4)))
    return false
  }
  await a.connect(B.id)
  await a.rekeyChild(B.id)
  await a.dpd(B.id)
  await b.rekeyIke(A.id)
  net.dropIf = () => false
  assert.ok(corpus.length >= 8)

  const r = new FakeRandom(0x1ce)
  const from = { address: A.addr, port: 4500 }
  const t0 = performance.now()
  for (let i = 0; i < TOTAL; i++) {
    if (i % 2 === 0) {
      const src = corpus[r.int(corpus.length)]!
      assert.doesNotThrow(() => b.receive(mutate(r, src), from))
      continue
    }
    let sa = [...b.sas.values()].find((s) => s.state.kind === 'established')
    if (!sa) {
      for (const x of [...a.sas.values()]) a.dropSa(x, 'reset')
      await a.connect(B.id)
      sa = [...b.sas.values()].find((s) => s.state.kind === 'established')!
    }
    const picked: Payload[] = []
    for (let n = r.int(5); n >= 0; n--) picked.push(innerPayload(r, sa))
    const chain = encodePayloads(picked)
    const inner = r.int(2) === 0 ? chain.bytes : mutate(r, chain.bytes)
    const first = r.int(8) === 0 ? r.int(256) : chain.first
    const et = [35, 36, 37][r.int(3)]!
    assert.doesNotThrow(() => b.receive(sealAsPeer(sa, et, sa.expectedId, first, inner), from))
    if (i % 1000 === 1) await new Promise((res) => setImmediate(res))
  }
  const ms = performance.now() - t0
  await new Promise((res) => setImmediate(res))
  assert.equal(unhandled, 0)
  const s = b.stats
  assert.equal(s.rxMessages >= TOTAL, true)
  assert.ok(s.rxMalformed + s.rxBadIcv + s.rxUnknownSpi + s.rxOutOfWindow > TOTAL / 4, JSON.stringify(s))
  // still serving: a fresh handshake and a liveness check go through
  for (const x of [...a.sas.values()]) a.dropSa(x, 'reset')
  const k = await a.connect(B.id)
  assert.ok(k.spiIn > 0)
  assert.equal(await a.dpd(B.id), true)
  t.diagnostic(`${TOTAL} messages in ${ms.toFixed(0)} ms; stats ${JSON.stringify(s)}`)
})
