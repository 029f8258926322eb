import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import {
  authToLocalRule,
  KeytabError,
  krb5Block,
  krb5ConfFull,
  mergeKeytab,
  sshDropIn,
  ticketHook,
} from './config-text.js'
import { BLOCK_BEGIN, SystemFiles, stripBlock } from './system-files.js'

failOnLeakedResources()

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sso-files-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const ORIGINAL = '[libdefaults]\n\tdefault_realm = ATHENA.MIT.EDU\n\trdns = false'

test('system files: edits restored byte for byte, new files and the directories made for them removed', async (t) => {
  const dir = await tmp(t)
  const krb5 = join(dir, 'krb5.conf')
  await writeFile(krb5, ORIGINAL, { mode: 0o640 })
  const files = new SystemFiles({ log: nullLogger }, { journalFile: join(dir, 'journal.json') })
  const block = krb5Block({
    self: { fqdn: 'desktop.alice.members.example', ula: 'fd00::1' },
    peers: [{ fqdn: 'laptop.alice.members.example', ula: 'fd00::2' }],
    caFile: '/x/ca.pem',
    account: 'alice',
    ssoUser: 'al',
  })
  const rule = authToLocalRule('alice', 'DESKTOP.ALICE.MEMBERS.EXAMPLE', 'al')
  const full = (b: string) =>
    krb5ConfFull({ original: ORIGINAL, block: b, rule, selfRealm: 'DESKTOP.ALICE.MEMBERS.EXAMPLE' })
  await files.write(krb5, full(block))
  await files.write(krb5, full(block.replace('fd00::2', 'fd00::3')))
  const written = await readFile(krb5, 'utf8')
  assert.ok(written.startsWith(`${ORIGINAL}\n${BLOCK_BEGIN}`), 'appended after a newline the original lacked')
  assert.equal(stripBlock(written), `${ORIGINAL}\n`)
  assert.match(written, /kdc = \[fd00::3\]:88/)
  assert.match(
    written,
    /auth_to_local = RULE:\[1:\$1@\$0\]\(\^alice@DESKTOP\\\.ALICE\\\.MEMBERS\\\.EXAMPLE\$\)s\/\^\.\*\$\/al\//,
  )
  assert.equal((await stat(krb5)).mode & 0o777, 0o640, 'written in place: mode kept')
  const deep = join(dir, 'share', 'host', 'client-key.pem')
  await files.write(deep, 'key', { mode: 0o600 })
  await files.write(join(dir, 'share', 'host', 'hook'), '#!/bin/sh\n', { mode: 0o755 })
  assert.equal((await stat(deep)).mode & 0o777, 0o600)

  // Another run (after a crash) finds the journal and restores.
  const again = new SystemFiles({ log: nullLogger }, { journalFile: join(dir, 'journal.json') })
  await again.restoreAll()
  assert.equal(await readFile(krb5, 'utf8'), ORIGINAL)
  assert.equal(existsSync(join(dir, 'share')), false, 'the directories made for new files are gone')
  assert.equal(existsSync(join(dir, 'journal.json')), false)
})

test('system files: a file changed by someone else keeps their change; krb5.conf loses only our block', async (t) => {
  const dir = await tmp(t)
  const krb5 = join(dir, 'krb5.conf')
  const other = join(dir, 'other.conf')
  await writeFile(krb5, `${ORIGINAL}\n`)
  await mkdir(join(dir, 'd'))
  const files = new SystemFiles({ log: nullLogger }, { journalFile: join(dir, 'journal.json') })
  const block = `${BLOCK_BEGIN} x\n[realms]\n\tX = {\n\t}\n# END autotunnel sso\n`
  await files.write(krb5, `${ORIGINAL}\n${block}`)
  await files.write(other, 'ours\n')
  await writeFile(krb5, `${ORIGINAL}\n${block}[extra]\n\tk = v\n`)
  await writeFile(other, 'theirs\n')
  await files.restoreAll()
  assert.equal(await readFile(krb5, 'utf8'), `${ORIGINAL}\n[extra]\n\tk = v\n`)
  assert.equal(await readFile(other, 'utf8'), 'theirs\n')
  assert.equal(stripBlock(`a\n${block}b\n`), 'a\nb\n')
})

test('keytab merge: our entries after the existing ones; an empty or missing keytab becomes ours; others refused', () => {
  const ours = Buffer.from('0502000000010a', 'hex')
  assert.deepEqual(mergeKeytab(null, ours), ours)
  assert.deepEqual(mergeKeytab(Buffer.alloc(0), ours), ours)
  assert.equal(mergeKeytab(Buffer.from('0502000000010b', 'hex'), ours).toString('hex'), '0502000000010b000000010a')
  assert.throws(() => mergeKeytab(Buffer.from('0501', 'hex'), ours), KeytabError)
  assert.throws(() => mergeKeytab(null, Buffer.from('00', 'hex')), KeytabError)
})

test('ssh drop-in and ticket hook: the user hosts by full and short name; the hook only acts for the SSO user', () => {
  const text = sshDropIn({
    fqdn: 'laptop.alice.members.example',
    domain: 'alice.members.example',
    hosts: ['laptop.alice.members.example', 'desktop.alice.members.example'],
    hook: '/var/lib/autotunnel/sso/laptop.alice.members.example/ticket-hook',
  })
  assert.match(text, /^Match host "\*\.alice\.members\.example,desktop,laptop" exec "\/var\/lib\/.*ticket-hook %h"$/m)
  assert.match(
    text,
    /^Host \*\.alice\.members\.example desktop laptop\n\tGSSAPIAuthentication yes\n\tGSSAPIKeyExchange yes/m,
  )
  const hook = ticketHook({ dir: '/d', domain: 'alice.members.example', account: 'alice', ssoUser: 'al' })
  assert.match(hook, /\[ "\$\(id -un\)" = 'al' \]/)
  assert.match(hook, /X509_user_identity=FILE:\$dir\/client\.pem,\$dir\/client-key\.pem/)
})

/** krb5_aname_to_localname through libkrb5 itself (ctypes): what sshd's krb5_kuserok asks. */
const AN2LN = `
import ctypes, sys
k = ctypes.CDLL('libkrb5.so.3')
ctx = ctypes.c_void_p(); p = ctypes.c_void_p(); buf = ctypes.create_string_buffer(256)
assert k.krb5_init_context(ctypes.byref(ctx)) == 0
assert k.krb5_parse_name(ctx, sys.argv[1].encode(), ctypes.byref(p)) == 0
print(buf.value.decode() if k.krb5_aname_to_localname(ctx, p, 256, buf) == 0 else '-')
`

test('auth_to_local: MIT maps exactly the owner principal of our realm to the SSO user, others as before', async (t) => {
  const dir = await tmp(t)
  const { execFileSync } = await import('node:child_process')
  const R = 'DESKTOP.ALICE.MEMBERS.EXAMPLE'
  const block = krb5Block({
    self: { fqdn: 'desktop.alice.members.example', ula: 'fd00::1' },
    peers: [],
    caFile: '/x/ca.pem',
    account: 'alice',
    ssoUser: 'al',
  })
  const rule = authToLocalRule('alice', R, 'al')
  const debian =
    '[libdefaults]\n\tdefault_realm = ATHENA.MIT.EDU\n[realms]\n\tATHENA.MIT.EDU = {\n\t\tkdc = kerberos.mit.edu\n\t}\n'
  const cases: [string, string, Record<string, string>][] = [
    ['Debian default (realm subsection exists)', debian, { [`alice@${R}`]: 'al', 'bob@ATHENA.MIT.EDU': 'bob' }],
    [
      'no subsection for the default realm',
      '[libdefaults]\n\tdefault_realm = EXAMPLE.ORG\n',
      { [`alice@${R}`]: 'al', 'bob@EXAMPLE.ORG': 'bob' },
    ],
    ['no default realm', '', { [`alice@${R}`]: 'al', [`bob@${R}`]: 'bob' }],
  ]
  for (const [what, original, want] of cases) {
    const text = krb5ConfFull({ original, block, rule, selfRealm: R })
    assert.equal(stripBlock(text), original.endsWith('\n') || original === '' ? original : `${original}\n`, what)
    const conf = join(dir, 'krb5.conf')
    await writeFile(conf, text)
    for (const [principal, local] of Object.entries(want)) {
      const out = execFileSync('python3', ['-c', AN2LN, principal], { env: { ...process.env, KRB5_CONFIG: conf } })
      assert.equal(out.toString().trim(), local, `${what}: ${principal}`)
    }
    const other = execFileSync('python3', ['-c', AN2LN, `carol@${R}`], { env: { ...process.env, KRB5_CONFIG: conf } })
    assert.notEqual(other.toString().trim(), 'al', `${what}: only the owner maps to the SSO user`)
  }
})
