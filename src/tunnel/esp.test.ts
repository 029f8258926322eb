import assert from 'node:assert/strict'
import { createCipheriv, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import fc from 'fast-check'
import { type AeadBackend, nativeAeadAvailable } from './aead.js'
import {
  ESP_ALGS,
  ESP_ICV_LEN,
  ESP_MAX_OVERHEAD,
  ESP_PAYLOAD_OFFSET,
  type EspAlg,
  EspCrypto,
  EspOpened,
  espSeqLo,
  espSpi,
  IpProto,
} from './esp.js'

const repoRoot = new URL('../../../', import.meta.url)
const ALGS = Object.keys(ESP_ALGS) as EspAlg[]

function keymat(alg: EspAlg): Buffer {
  return randomBytes(ESP_ALGS[alg].keyLen + 4)
}

function seal(c: EspCrypto, payload: Buffer, seq: number, nh: number = IpProto.IPV6): Buffer {
  const slab = Buffer.alloc(payload.length + ESP_MAX_OVERHEAD)
  payload.copy(slab, ESP_PAYLOAD_OFFSET)
  const n = c.sealInPlace(slab, payload.length, seq, nh)
  return slab.subarray(0, n)
}

const BACKENDS: AeadBackend[] = ['node', 'native']
for (const backend of BACKENDS) {
  const skip = backend === 'native' && !nativeAeadAvailable ? 'native AEAD not built (make build)' : false
  const mk = (alg: EspAlg, spi: number, km: Buffer, esn: boolean): EspCrypto =>
    new EspCrypto(alg, spi, km, esn, backend)
  test(`[${backend}] RFC 7634 Appendix A: the ESP example opens to the published plaintext and trailer`, {
    skip,
  }, () => {
    const v = JSON.parse(readFileSync(new URL('test/vectors/rfc7634-esp.json', repoRoot), 'utf8'))
    const c = mk('chacha20poly1305', Number.parseInt(v.spi, 16), Buffer.from(v.key + v.salt, 'hex'), false)
    const pristine = Buffer.concat([
      Buffer.from(v.aad, 'hex'),
      Buffer.from(v.iv, 'hex'),
      Buffer.from(v.ciphertext, 'hex'),
      Buffer.from(v.icv, 'hex'),
    ])
    const pkt = Buffer.from(pristine)
    assert.equal(espSpi(pkt, 0), 0x01020304)
    assert.equal(espSeqLo(pkt, 0), v.seq)
    const out = new EspOpened()
    assert.equal(c.open(pkt, 0, pkt.length, v.seq, out), 0)
    assert.equal(out.plain.toString('hex'), v.plaintext)
    assert.equal(out.payloadLen, v.innerLen)
    assert.equal(out.nextHeader, v.nextHeader)
    // Every single-bit flip in IV, ciphertext or ICV fails authentication. (SPI and sequence number are
    // authenticated too, but open() takes them from the SA lookup and the replay inference: see the next check.)
    for (let i = 8; i < pristine.length; i++) {
      const bad = Buffer.from(pristine)
      bad[i]! ^= 0x01
      assert.equal(c.open(bad, 0, bad.length, v.seq, out), 'icv', `flip at ${i}`)
    }
    // The same packet under the wrong sequence number (AAD) fails too.
    assert.equal(c.open(Buffer.from(pristine), 0, pkt.length, v.seq + 1, out), 'icv')
  })

  test(`[${backend}] RFC 4106 / RFC 7634 layout: header, IV = sequence number, padding 1..n to a 4-octet boundary, ICV`, {
    skip,
  }, () => {
    for (const alg of ALGS) {
      const km = keymat(alg)
      const spi = 0xc0ffee01
      const c = mk(alg, spi, km, false)
      const payload = randomBytes(61)
      const pkt = seal(c, payload, 7)
      assert.equal(pkt.readUInt32BE(0), spi)
      assert.equal(pkt.readUInt32BE(4), 7)
      assert.equal(pkt.subarray(8, 16).toString('hex'), '0000000000000007')
      // 61 + 2 trailer = 63 -> one pad octet; ciphertext ends on a 4-octet boundary.
      assert.equal(pkt.length, 16 + 61 + 1 + 2 + ESP_ICV_LEN)
      // Recompute independently with node:crypto: nonce = salt || IV, AAD = SPI || seq.
      const info = ESP_ALGS[alg]
      const nonce = Buffer.concat([km.subarray(info.keyLen), pkt.subarray(8, 16)])
      const e = createCipheriv(info.cipher as 'aes-128-gcm', km.subarray(0, info.keyLen), nonce, { authTagLength: 16 })
      e.setAAD(pkt.subarray(0, 8))
      const expect = Buffer.concat([e.update(Buffer.concat([payload, Buffer.from([1, 1, IpProto.IPV6])])), e.final()])
      assert.deepEqual(pkt.subarray(16, pkt.length - 16), expect)
      assert.deepEqual(pkt.subarray(pkt.length - 16), e.getAuthTag())
    }
  })

  test(`[${backend}] round trip for every algorithm, ESN on and off, payload lengths 0..70 and 1400`, { skip }, () => {
    const out = new EspOpened()
    for (const alg of ALGS) {
      for (const esn of [false, true]) {
        const km = keymat(alg)
        const tx = mk(alg, 0x1234, km, esn)
        const rx = mk(alg, 0x1234, km, esn)
        for (const len of [...Array.from({ length: 71 }, (_, i) => i), 1400]) {
          const p = randomBytes(len)
          const seq = esn ? 0x1_0000_0000 * 3 + len + 1 : len + 1
          const pkt = seal(tx, p, seq)
          assert.equal((pkt.length - ESP_PAYLOAD_OFFSET - ESP_ICV_LEN) % 4, 0)
          assert.equal(rx.open(Buffer.from(pkt), 0, pkt.length, seq, out), 0, `${alg} esn=${esn} len=${len}`)
          assert.deepEqual(out.plain.subarray(0, out.payloadLen), p)
          assert.equal(out.nextHeader, IpProto.IPV6)
        }
      }
    }
  })

  test(`[${backend}] ESN: the high 32 bits are authenticated (RFC 4106 section 5, RFC 7634 section 3) but not sent`, {
    skip,
  }, () => {
    const out = new EspOpened()
    for (const alg of ALGS) {
      const km = keymat(alg)
      const tx = mk(alg, 0x5000, km, true)
      const rx = mk(alg, 0x5000, km, true)
      const seq = 0x1_0000_0000 * 2 + 9
      const pkt = seal(tx, Buffer.from('hello'), seq)
      assert.equal(pkt.readUInt32BE(4), 9, 'only the low 32 bits are on the wire')
      assert.equal(rx.open(Buffer.from(pkt), 0, pkt.length, 9, out), 'icv', 'wrong high bits must fail')
      assert.equal(rx.open(Buffer.from(pkt), 0, pkt.length, 0x1_0000_0000 + 9, out), 'icv')
      assert.equal(rx.open(Buffer.from(pkt), 0, pkt.length, seq, out), 0)
    }
  })

  test(`[${backend}] a wrong key, a wrong salt or a bad trailer is refused with a reason`, { skip }, () => {
    const out = new EspOpened()
    const km = keymat('aes128gcm16')
    const tx = mk('aes128gcm16', 0x777, km, false)
    const pkt = seal(tx, Buffer.from('abc'), 1)
    const wrongKey = Buffer.from(km)
    wrongKey[0]! ^= 1
    assert.equal(mk('aes128gcm16', 0x777, wrongKey, false).open(Buffer.from(pkt), 0, pkt.length, 1, out), 'icv')
    const wrongSalt = Buffer.from(km)
    wrongSalt[17]! ^= 1
    assert.equal(mk('aes128gcm16', 0x777, wrongSalt, false).open(Buffer.from(pkt), 0, pkt.length, 1, out), 'icv')
    // A sender that pads with zeros instead of 1, 2, 3 (authenticated, so only the trailer check catches it).
    const slab = Buffer.alloc(64)
    Buffer.from('ab').copy(slab, ESP_PAYLOAD_OFFSET)
    const info = ESP_ALGS.aes128gcm16
    slab.writeUInt32BE(0x777, 0)
    slab.writeUInt32BE(2, 4)
    slab.writeUInt32BE(2, 12)
    const pt = Buffer.from([0x61, 0x62, 0, 0, 2, 41])
    const e = createCipheriv(
      info.cipher as 'aes-128-gcm',
      km.subarray(0, 16),
      Buffer.concat([km.subarray(16), slab.subarray(8, 16)]),
      {
        authTagLength: 16,
      },
    )
    e.setAAD(slab.subarray(0, 8))
    const bad = Buffer.concat([slab.subarray(0, 16), e.update(pt), e.final(), e.getAuthTag()])
    const rx = mk('aes128gcm16', 0x777, km, false)
    assert.equal(rx.open(Buffer.from(bad), 0, bad.length, 2, out), 'bad_trailer')
    assert.equal(rx.open(bad, 0, 20, 2, out), 'truncated')
  })

  test(`[${backend}] constructor rejects bad SPIs, wrong key lengths and unknown algorithms`, { skip }, () => {
    assert.throws(() => mk('aes128gcm16', 0x10, keymat('aes128gcm16'), false), RangeError)
    assert.throws(() => mk('aes128gcm16', 0x1000, randomBytes(16), false), RangeError)
    assert.throws(() => mk('aes256gcm16', 0x1000, randomBytes(20), false), RangeError)
    assert.throws(() => mk('des' as EspAlg, 0x1000, randomBytes(20), false), TypeError)
  })

  test(`[${backend}] property: arbitrary bytes never throw, and only a genuine packet opens`, { skip }, () => {
    const km = keymat('chacha20poly1305')
    const rx = mk('chacha20poly1305', 0x4242, km, true)
    const out = new EspOpened()
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (bytes, seq) => {
        const b = Buffer.from(bytes)
        const r = rx.open(b, 0, b.length, seq + 1, out)
        assert.ok(r === 'truncated' || r === 'icv', String(r))
      }),
      { numRuns: 2000 },
    )
  })
}

test('native and node:crypto backends produce identical packets and open each other', {
  skip: nativeAeadAvailable ? false : 'native AEAD not built',
}, () => {
  const out = new EspOpened()
  for (const alg of ALGS) {
    const km = keymat(alg)
    const n = new EspCrypto(alg, 0x9999, km, true, 'native')
    const j = new EspCrypto(alg, 0x9999, km, true, 'node')
    assert.equal(n.backend, 'native')
    assert.equal(j.backend, 'node')
    for (const len of [0, 1, 63, 1400]) {
      const p = randomBytes(len)
      const a = seal(n, p, 0x1_0000_0005 + len)
      const b = seal(j, p, 0x1_0000_0005 + len)
      assert.deepEqual(a, b)
      assert.equal(j.open(Buffer.from(a), 0, a.length, 0x1_0000_0005 + len, out), 0)
      assert.deepEqual(out.plain.subarray(0, out.payloadLen), p)
      assert.equal(n.open(Buffer.from(b), 0, b.length, 0x1_0000_0005 + len, out), 0)
      assert.deepEqual(out.plain.subarray(0, out.payloadLen), p)
    }
  }
})
