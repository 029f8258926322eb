import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { DhGroup, EncrId, PrfId } from './constants.js'
import {
  aeadFor,
  aeadOpen,
  aeadSeal,
  deriveChildKeys,
  deriveIkeSaKeys,
  dhGenerate,
  prf,
  prfFor,
  prfPlus,
  skeyseedInitial,
  skeyseedRekey,
} from './crypto.js'
import { IkeError } from './errors.js'

failOnLeakedResources()

const repoRoot = new URL('../../../', import.meta.url)
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

test('PRF HMAC-SHA2-256/384/512 match RFC 4231 (test/vectors/rfc4231-hmac.json)', () => {
  const v = JSON.parse(readFileSync(new URL('test/vectors/rfc4231-hmac.json', repoRoot), 'utf8')) as {
    cases: Record<string, string>[]
  }
  let checked = 0
  for (const c of v.cases) {
    if (c.name?.includes('Case 5')) continue
    for (const [id, name] of [
      [PrfId.HMAC_SHA2_256, 'hmac-sha256'],
      [PrfId.HMAC_SHA2_384, 'hmac-sha384'],
      [PrfId.HMAC_SHA2_512, 'hmac-sha512'],
    ] as const) {
      assert.equal(prf(prfFor(id)!, hex(c.key!), hex(c.data!)).toString('hex'), c[name], `${c.name} ${name}`)
      checked++
    }
  }
  assert.ok(checked >= 15)
})

test('prf+ follows RFC 7296 2.13: T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), truncated', () => {
  const spec = prfFor(PrfId.HMAC_SHA2_256)!
  const k = Buffer.from('key')
  const s = Buffer.from('seed')
  const t1 = createHmac('sha256', k)
    .update(Buffer.concat([s, Buffer.of(1)]))
    .digest()
  const t2 = createHmac('sha256', k)
    .update(Buffer.concat([t1, s, Buffer.of(2)]))
    .digest()
  assert.deepEqual(prfPlus(spec, k, s, 50), Buffer.concat([t1, t2]).subarray(0, 50))
  assert.throws(() => prfPlus(spec, k, s, 32 * 256), RangeError)
})

test('X25519 (group 31) matches RFC 7748 section 6.1', () => {
  const a = dhGenerate(DhGroup.CURVE25519, hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'))
  const b = dhGenerate(DhGroup.CURVE25519, hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'))
  assert.equal(a.publicKey.toString('hex'), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a')
  assert.equal(b.publicKey.toString('hex'), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f')
  const k = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'
  assert.equal(a.computeSecret(b.publicKey).toString('hex'), k)
  assert.equal(b.computeSecret(a.publicKey).toString('hex'), k)
})

test('ECP-256 (group 19) matches RFC 5903 section 8.1: KE data is x | y, g^ir is x', () => {
  const i = dhGenerate(DhGroup.ECP_256, hex('C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433'))
  const r = dhGenerate(DhGroup.ECP_256, hex('C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53'))
  assert.equal(
    i.publicKey.toString('hex').toUpperCase(),
    'DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180' +
      '5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3',
  )
  assert.equal(
    r.publicKey.toString('hex').toUpperCase(),
    'D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63' +
      '56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB',
  )
  const girx = 'D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE'
  assert.equal(i.computeSecret(r.publicKey).toString('hex').toUpperCase(), girx)
  assert.equal(r.computeSecret(i.publicKey).toString('hex').toUpperCase(), girx)
})

test('ECP-384 (group 20): 96-octet KE data, both sides agree on a 48-octet x', () => {
  const i = dhGenerate(DhGroup.ECP_384)
  const r = dhGenerate(DhGroup.ECP_384)
  assert.equal(i.publicKey.length, 96)
  assert.deepEqual(i.computeSecret(r.publicKey), r.computeSecret(i.publicKey))
  assert.equal(i.computeSecret(r.publicKey).length, 48)
})

test('invalid peer key exchange values are typed errors', () => {
  const p = dhGenerate(DhGroup.ECP_256)
  const off = Buffer.from(dhGenerate(DhGroup.ECP_256).publicKey)
  off[63]! ^= 1
  for (const bad of [Buffer.alloc(64), off, Buffer.alloc(3)]) assert.throws(() => p.computeSecret(bad), IkeError)
  const x = dhGenerate(DhGroup.CURVE25519)
  assert.throws(() => x.computeSecret(Buffer.alloc(32)), IkeError) // small order: all-zero result (RFC 8031 2.3)
  assert.throws(() => x.computeSecret(Buffer.alloc(31)), IkeError)
  assert.throws(() => dhGenerate(14), IkeError)
})

test('ChaCha20-Poly1305 AEAD reproduces the RFC 7634 Appendix A example (test/vectors/rfc7634-esp.json)', () => {
  const v = JSON.parse(readFileSync(new URL('test/vectors/rfc7634-esp.json', repoRoot), 'utf8')) as Record<
    string,
    string
  >
  const keymat = Buffer.concat([hex(v.key!), hex(v.salt!)])
  const sealed = aeadSeal('chacha20-poly1305', keymat, hex(v.iv!), hex(v.aad!), hex(v.plaintext!))
  assert.equal(sealed.subarray(sealed.length - 16).toString('hex'), v.icv)
  assert.equal(sealed.subarray(0, sealed.length - 16).toString('hex'), v.ciphertext)
  assert.deepEqual(aeadOpen('chacha20-poly1305', keymat, hex(v.iv!), hex(v.aad!), sealed), hex(v.plaintext!))
  sealed[0]! ^= 1
  assert.equal(aeadOpen('chacha20-poly1305', keymat, hex(v.iv!), hex(v.aad!), sealed), undefined)
})

test('AES-GCM-16 128/256 seal/open round trip; wrong AAD fails', () => {
  for (const bits of [128, 256]) {
    const a = aeadFor(EncrId.AES_GCM_16, bits)!
    const keymat = Buffer.alloc(a.keyLen + 4, 7)
    const iv = Buffer.alloc(8, 1)
    const s = aeadSeal(a.alg, keymat, iv, Buffer.from('aad'), Buffer.from('hello'))
    assert.deepEqual(aeadOpen(a.alg, keymat, iv, Buffer.from('aad'), s), Buffer.from('hello'))
    assert.equal(aeadOpen(a.alg, keymat, iv, Buffer.from('aaD'), s), undefined)
  }
  assert.equal(aeadFor(EncrId.AES_GCM_16, 192), undefined)
  assert.equal(aeadFor(EncrId.CHACHA20_POLY1305, 256), undefined)
})

test('SK_* lengths (2.14) and Child SA KEYMAT order (2.17), with and without PFS', () => {
  const spec = prfFor(PrfId.HMAC_SHA2_384)!
  const a = aeadFor(EncrId.AES_GCM_16, 256)!
  const ni = Buffer.alloc(32, 1)
  const nr = Buffer.alloc(32, 2)
  const seed = skeyseedInitial(spec, ni, nr, Buffer.alloc(32, 3))
  const k = deriveIkeSaKeys(spec, a, seed, ni, nr, Buffer.alloc(8, 4), Buffer.alloc(8, 5))
  assert.deepEqual(
    [k.skD, k.skEi, k.skEr, k.skPi, k.skPr].map((b) => b.length),
    [48, 36, 36, 48, 48],
  )
  const all = prfPlus(spec, seed, Buffer.concat([ni, nr, Buffer.alloc(8, 4), Buffer.alloc(8, 5)]), 48 + 72 + 96)
  assert.deepEqual(k.skEr, all.subarray(48 + 36, 48 + 72))
  const c = deriveChildKeys(spec, k.skD, a, ni, nr)
  assert.deepEqual(Buffer.concat([c.keyItoR, c.keyRtoI]), prfPlus(spec, k.skD, Buffer.concat([ni, nr]), 72))
  const g = Buffer.alloc(32, 9)
  const pfs = deriveChildKeys(spec, k.skD, a, ni, nr, g)
  assert.deepEqual(pfs.keyItoR, prfPlus(spec, k.skD, Buffer.concat([g, ni, nr]), 36))
  assert.deepEqual(skeyseedRekey(spec, k.skD, g, ni, nr), prf(spec, k.skD, Buffer.concat([g, ni, nr])))
})
