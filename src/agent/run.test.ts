import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { deriveTsigKey } from '../dns/account-key.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { downMessage, loadKey, parseHostPort, resolveDomain, UsageError } from './run.js'

failOnLeakedResources()

test('parseHostPort', () => {
  assert.deepEqual(parseHostPort('198.51.100.10', 53), { host: '198.51.100.10', port: 53 })
  assert.deepEqual(parseHostPort('ns.members.example:5300', 53), { host: 'ns.members.example', port: 5300 })
  assert.deepEqual(parseHostPort('[2001:db8::1]:853', 53), { host: '2001:db8::1', port: 853 })
  for (const bad of ['', 'host:0', 'host:70000', 'host:x', '[::1'])
    assert.throws(() => parseHostPort(bad, 53), UsageError, bad)
})

test('downMessage: says whether the port mapping was deleted, was not deleted, or never existed', () => {
  const m = (hadMapping: boolean | undefined, mappingDeleted: boolean, errors: string[] = []): string =>
    downMessage({ recordsDeleted: true, ...(hadMapping === undefined ? {} : { hadMapping }), mappingDeleted, errors })
  assert.equal(m(true, true), 'agent stopped: records deleted, port mapping deleted\n')
  assert.equal(m(false, false), 'agent stopped: records deleted, port mapping none (there was no mapping to delete)\n')
  assert.equal(
    m(true, false, ['pcp: timeout']),
    'agent stopped: records deleted, port mapping NOT deleted (it expires with its lifetime)\n  error: pcp: timeout\n',
  )
  assert.match(m(undefined, false), /port mapping not deleted, or there was none\n$/)
  assert.match(
    downMessage({ recordsDeleted: false, hadMapping: false, mappingDeleted: false, errors: [] }),
    /records NOT deleted \(they expire with their lease\)/,
  )
})

test('loadKey: the key file of `account add --json`, or the same key derived from the password', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'at-key-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const secret = deriveTsigKey('alice', 'members.example', 'correct horse')
  const file = join(dir, 'alice.json')
  await writeFile(
    file,
    JSON.stringify({
      user: 'alice',
      domain: 'alice.members.example.',
      keyName: 'alice.members.example.',
      algorithm: 'hmac-sha256',
      secret: secret.toString('base64'),
    }),
  )
  const fromFile = await loadKey({ keyFile: file }, 'alice.members.example')
  const fromPassword = await loadKey({ passwordStdin: true }, 'alice.members.example', async () => 'correct horse')
  assert.deepEqual(fromFile, { name: 'alice.members.example.', algorithm: 'hmac-sha256', secret })
  assert.deepEqual(fromPassword, fromFile)
  const md5 = await loadKey({ passwordStdin: true, keyAlgorithm: 'hmac-md5' }, 'alice.members.example', async () => 'x')
  assert.equal(md5.secret.length, 16)
  await assert.rejects(loadKey({}, 'alice.members.example'), UsageError)
  await assert.rejects(loadKey({ keyFile: file, passwordStdin: true }, 'alice.members.example'), UsageError)
  await assert.rejects(
    loadKey({ passwordStdin: true }, 'alice.members.example', async () => ''),
    UsageError,
  )
})

test("resolveDomain: --domain defaults to the key file's; a different --domain is an error that names both", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'at-dom-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'alice.key.json')
  await writeFile(
    file,
    JSON.stringify({
      user: 'alice',
      domain: 'alice.members.example',
      keyName: 'alice.members.example.',
      algorithm: 'hmac-sha256',
      secret: 'AAAA',
    }),
  )
  assert.equal(await resolveDomain({ keyFile: file }), 'alice.members.example')
  assert.equal(await resolveDomain({ keyFile: file, domain: 'Alice.Members.Example.' }), 'alice.members.example')
  await assert.rejects(
    resolveDomain({ keyFile: file, domain: 'alcie.members.example' }),
    (e: Error) =>
      e instanceof UsageError &&
      /--domain alcie\.members\.example does not match the key file's domain alice\.members\.example/.test(e.message),
  )
  // Older key files without "domain": the key name is the domain.
  const old = join(dir, 'old.json')
  await writeFile(old, JSON.stringify({ keyName: 'bob.members.example.', algorithm: 'hmac-sha256', secret: 'AAAA' }))
  assert.equal(await resolveDomain({ keyFile: old }), 'bob.members.example')
  assert.equal(await resolveDomain({ passwordStdin: true, domain: 'bob.members.example' }), 'bob.members.example')
  await assert.rejects(resolveDomain({ passwordStdin: true }), /--domain USER\.ZONE is needed with --password-stdin/)
})
