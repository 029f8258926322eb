import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { createAccountCa, x509 } from './certs.js'
import {
  certLine,
  checkHostKeyBlob,
  p256SshBlob,
  parsePublicKeyLine,
  SshKeyError,
  signHostCertificate,
} from './ssh-cert.js'

failOnLeakedResources()

const keygen = (...args: string[]): string =>
  execFileSync('ssh-keygen', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })

test('host certificates: ssh-keygen -L reads them, checks the CA signature, shows principals and validity', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sso-sshcert-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const ca = await createAccountCa('alice', 'alice.members.example')
  const caBlob = p256SshBlob(Buffer.from(new x509.X509Certificate(ca.certPem).publicKey.rawData))
  await writeFile(join(dir, 'ca.pub'), `ecdsa-sha2-nistp256 ${caBlob.toString('base64')} ca\n`)
  const caFp = keygen('-l', '-f', join(dir, 'ca.pub')).split(' ')[1]
  for (const type of ['ed25519', 'ecdsa']) {
    const key = join(dir, `host_${type}`)
    keygen('-q', '-t', type, '-N', '', '-f', key)
    const blob = parsePublicKeyLine(await readFile(`${key}.pub`, 'utf8'))
    const now = Math.floor(Date.now() / 1000)
    const cert = signHostCertificate({
      caKeyPem: ca.keyPem,
      hostKey: blob,
      keyId: 'autotunnel desktop.alice.members.example',
      principals: ['desktop.alice.members.example', 'desktop'],
      validAfterSec: now - 300,
      validBeforeSec: now + 7 * 86400,
    })
    await writeFile(`${key}-cert.pub`, certLine(cert, 'desktop'))
    const out = keygen('-L', '-f', `${key}-cert.pub`)
    assert.match(
      out,
      new RegExp(
        `Type: ${type === 'ecdsa' ? 'ecdsa-sha2-nistp256' : 'ssh-ed25519'}-cert-v01@openssh.com host certificate`,
      ),
    )
    assert.match(out, new RegExp(`Signing CA: ECDSA ${caFp?.replace(/[+/]/g, (c) => `\\${c}`)}`))
    assert.match(out, /Principals: \n\s+desktop\.alice\.members\.example\n\s+desktop\n/)
    assert.match(out, /Critical Options: \(none\)/)
    // A flipped bit in the signature: OpenSSH refuses to load the certificate.
    const bad = Buffer.from(cert)
    bad[bad.length - 3] = (bad[bad.length - 3] ?? 0) ^ 1
    await writeFile(`${key}-bad-cert.pub`, certLine(bad, 'bad'))
    assert.throws(() => keygen('-L', '-f', `${key}-bad-cert.pub`))
  }
  assert.throws(() => checkHostKeyBlob(Buffer.from('00000007ssh-rsa', 'latin1')), SshKeyError)
  assert.throws(() => checkHostKeyBlob(Buffer.from([0, 0, 0, 9, 1])), SshKeyError)
})
