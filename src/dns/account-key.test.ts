import assert from 'node:assert/strict'
import { pbkdf2Sync } from 'node:crypto'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { accountKeyName, deriveTsigKey, deriveTsigKeyAsync, isValidUser, randomTsigKey } from './account-key.js'

failOnLeakedResources()

test('key name is the user domain, fully qualified and lower case', () => {
  assert.equal(accountKeyName('alice', 'Members.Example'), 'alice.members.example.')
  assert.equal(accountKeyName('alice', 'members.example.'), 'alice.members.example.')
})

test('derived key is PBKDF2-HMAC-SHA256 with the documented salt', () => {
  const k = deriveTsigKey('alice', 'members.example', 'correct horse')
  const want = pbkdf2Sync('correct horse', 'autotunnel-tsig-key-v1:alice.members.example.', 300_000, 32, 'sha256')
  assert.deepEqual(k, want)
  assert.equal(deriveTsigKey('alice', 'members.example', 'correct horse', 'hmac-md5').length, 16)
})

test('salt separates users and zones; async matches sync', async () => {
  const a = deriveTsigKey('alice', 'members.example', 'pw')
  assert.notDeepEqual(a, deriveTsigKey('bob', 'members.example', 'pw'))
  assert.notDeepEqual(a, deriveTsigKey('alice', 'other.example', 'pw'))
  assert.deepEqual(await deriveTsigKeyAsync('alice', 'members.example.', 'pw'), a)
})

test('user names are single LDH labels', () => {
  for (const ok of ['alice', 'a', 'bob-2', '0day']) assert.ok(isValidUser(ok), ok)
  for (const bad of ['', '-a', 'a-', 'a.b', '_x', 'Alice', 'a'.repeat(64)]) assert.ok(!isValidUser(bad), bad)
  assert.throws(() => deriveTsigKey('a.b', 'z', 'pw'), TypeError)
  assert.equal(randomTsigKey().length, 32)
})
