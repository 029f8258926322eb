// The tunnel's receive path (src/tunnel/receive.ts) on the shared UDP port: RFC 3948 classification
// (keepalive, non-ESP marker, ESP), ESP inbound processing (RFC 4303 3.4: SPI lookup, replay window with ESN
// inference, ICV, padding and trailer, inner IPv6 checks, roaming) and datagrams from our TURN server
// (ChannelData, Data indications) unwrapped into the same path. Nothing in there may throw on packet content.
// Selector bits: 0 set: the rest is [seq low (4)][plaintext with trailer], sealed under the SA's key so the
// checks after the ICV are reached; 1 set: the datagram comes from the TURN server; 2 set: the SA uses ESN.
import { createCipheriv } from 'node:crypto'
import { IkeWireError } from '../../../src/ike/errors.js'
import { decodeMessage } from '../../../src/ike/message.js'
import { FakeClock } from '../../../src/io/clock.fake.js'
import { nullLogger } from '../../../src/io/log.js'
import { FakeRandom } from '../../../src/io/random.fake.js'
import { FakeTun } from '../../../src/io/tun.fake.js'
import { TurnClient } from '../../../src/traversal/turn.js'
import { newCounters } from '../../../src/tunnel/counters.js'
import { ESP_ALGS, ESP_SALT_LEN, EspCrypto } from '../../../src/tunnel/esp.js'
import { Receiver } from '../../../src/tunnel/receive.js'
import { ReplayWindow } from '../../../src/tunnel/replay.js'
import { type InboundSa, newPeer, parseIpv6 } from '../../../src/tunnel/sa-table.js'
import { expectOnly, selector } from './harness.js'

const ALG = 'aes256gcm16'
const KEYMAT = Buffer.alloc(ESP_ALGS[ALG].keyLen + ESP_SALT_LEN, 0x3c)
const SPI = 0x1000
const SPI_ESN = 0x2000
const CRYPTO = new EspCrypto(ALG, SPI, KEYMAT, false)
const CRYPTO_ESN = new EspCrypto(ALG, SPI_ESN, KEYMAT, true)
const LOCAL = parseIpv6('fd00:a::1').bytes
const PEER = parseIpv6('fd00:b::1')
const RELAY = { address: '192.0.2.1', port: 3478 }
const FROM = { address: '198.51.100.20', port: 4500, family: 'IPv4' as const }
const SEQ_LEN = 4
const TAG_LEN = 16

/** SPI || seq || IV || AES-GCM(plaintext) || ICV, as a peer holding the SA would send it (RFC 4106). */
function seal(spi: number, seq: number, plaintext: Buffer): Buffer {
  const head = Buffer.alloc(16)
  head.writeUInt32BE(spi, 0)
  head.writeUInt32BE(seq, 4)
  head.writeUInt32BE(seq, 12)
  const nonce = Buffer.concat([KEYMAT.subarray(ESP_ALGS[ALG].keyLen), head.subarray(8, 16)])
  const c = createCipheriv('aes-256-gcm', KEYMAT.subarray(0, ESP_ALGS[ALG].keyLen), nonce, { authTagLength: TAG_LEN })
  // AAD: SPI || seq low, or with ESN SPI || seq high (0 for a fresh window) || seq low.
  const aad =
    spi === SPI_ESN ? Buffer.concat([head.subarray(0, 4), Buffer.alloc(4), head.subarray(4, 8)]) : head.subarray(0, 8)
  c.setAAD(aad)
  return Buffer.concat([head, c.update(plaintext), c.final(), c.getAuthTag()])
}

function receiver(): Receiver {
  const peer = newPeer(PEER.canonical, PEER.bytes, { address: FROM.address, port: FROM.port }, false)
  const inboundBySpi = new Map<number, InboundSa>()
  for (const crypto of [CRYPTO, CRYPTO_ESN]) {
    const sa = { spi: crypto.spi, alg: ALG, crypto, replay: new ReplayWindow(), peer, installedAt: 0 } as const
    inboundBySpi.set(sa.spi, sa)
    peer.inbound.push(sa)
  }
  const clock = new FakeClock()
  const r = new Receiver({
    tun: new FakeTun(),
    clock,
    log: nullLogger,
    counters: newCounters(),
    inboundBySpi,
    localUla: LOCAL,
  })
  r.write = () => true
  r.onIke = (msg) => expectOnly([IkeWireError], () => decodeMessage(msg))
  const turn = new TurnClient(
    { clock, random: new FakeRandom(), log: nullLogger, send: () => {} },
    { ...RELAY, username: 'u', password: 'p' },
  )
  r.relay = { address: RELAY.address, port: RELAY.port, offer: (msg, deliver) => turn.offer(msg, deliver) }
  return r
}

export function fuzz(data: Buffer): void {
  const [sel, rest] = selector(data)
  let msg = rest
  if (sel & 1) {
    if (rest.length < SEQ_LEN) return
    msg = seal(sel & 4 ? SPI_ESN : SPI, rest.readUInt32BE(0), rest.subarray(SEQ_LEN))
  }
  const from = sel & 2 ? { ...RELAY, family: 'IPv4' as const } : FROM
  receiver().fromUdp(msg, from)
}
