import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { derivePsk, signatureAuthData, signatureAuthVerify } from './auth.js'
import {
  encodePublicKeyRecord,
  generateHostKey,
  HOST_KEY_FILE,
  loadOrCreateHostKey,
  parsePublicKeyRecord,
  publicKeysFromTxt,
} from './hostkey.js'

failOnLeakedResources()

test('host key: created once in the state dir (0600), loaded unchanged afterwards', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ike-hostkey-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  for (const alg of ['ed25519', 'ecdsa-p256'] as const) {
    const sub = join(dir, alg)
    const k1 = await loadOrCreateHostKey(sub, alg)
    const k2 = await loadOrCreateHostKey(sub, 'ed25519')
    assert.equal(k2.alg, alg, 'an existing key wins over the requested algorithm')
    assert.ok(k1.publicKey.equals(k2.publicKey))
    assert.equal((await stat(join(sub, HOST_KEY_FILE))).mode & 0o777, 0o600)
    assert.match(await readFile(join(sub, HOST_KEY_FILE), 'utf8'), /BEGIN PRIVATE KEY/)
  }
})

test('public key TXT record round-trips; foreign or tampered records are ignored', () => {
  for (const alg of ['ed25519', 'ecdsa-p256'] as const) {
    const k = generateHostKey(alg)
    const rec = encodePublicKeyRecord(k.publicKey)
    assert.match(rec, new RegExp(`^v=at-ike1; k=${alg}; p=`))
    assert.ok(parsePublicKeyRecord(rec)?.equals(k.publicKey))
  }
  const ed = encodePublicKeyRecord(generateHostKey().publicKey)
  assert.equal(parsePublicKeyRecord(ed.replace('k=ed25519', 'k=ecdsa-p256')), undefined)
  assert.equal(parsePublicKeyRecord(ed.replace('v=at-ike1', 'v=other')), undefined)
  assert.equal(parsePublicKeyRecord(ed.slice(0, -10)), undefined)
  assert.equal(parsePublicKeyRecord('v=spf1 -all'), undefined)
  assert.equal(publicKeysFromTxt(['v=spf1 -all', ed, 'garbage']).length, 1)
})

test('RFC 7427 AUTH data: Ed25519 and ECDSA verify with the right key only', () => {
  const octets = Buffer.from('signed octets')
  for (const alg of ['ed25519', 'ecdsa-p256'] as const) {
    const k = generateHostKey(alg)
    const other = generateHostKey(alg)
    const data = signatureAuthData(k.privateKey, octets)
    assert.equal(signatureAuthVerify([k.publicKey], octets, data), true)
    assert.equal(signatureAuthVerify([other.publicKey], octets, data), false)
    assert.equal(signatureAuthVerify([k.publicKey], Buffer.from('other octets'), data), false)
    assert.equal(signatureAuthVerify([other.publicKey, k.publicKey], octets, data), true)
    assert.equal(signatureAuthVerify([k.publicKey], octets, data.subarray(0, 5)), false)
  }
  // AlgorithmIdentifier for Ed25519 per RFC 8420 section 2
  const d = signatureAuthData(generateHostKey().privateKey, octets)
  assert.equal(d.subarray(0, 8).toString('hex'), '07300506032b6570')
})

test('derivePsk: per user, from the account secret only (never the host name)', () => {
  const a = derivePsk('secret one', 'alice')
  assert.equal(a.length, 32)
  assert.deepEqual(derivePsk('secret one', 'Alice'), a)
  assert.notDeepEqual(derivePsk('secret two', 'alice'), a)
  assert.notDeepEqual(derivePsk('secret one', 'bob'), a)
  assert.throws(() => derivePsk('', 'alice'), RangeError)
})
