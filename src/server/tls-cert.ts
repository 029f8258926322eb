// Self-signed certificate for the DoT listener (RFC 7858) when no --tls-cert/--tls-key is given. Node has no
// X.509 generation API, so this runs the `openssl` command (Debian package openssl, present wherever Node's
// own TLS is): an audited encoder is preferable to a hand-written DER builder for a file clients may pin.
// The key is P-256 ECDSA; the subjectAltName carries the server name and the advertised addresses.
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { chmodSync, existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export interface TlsMaterial {
  readonly cert: Buffer
  readonly key: Buffer
  readonly certFile: string
  readonly keyFile: string
  /** SHA-256 of the DER certificate, colon-separated hex (as `openssl x509 -fingerprint -sha256` prints). */
  readonly fingerprint256: string
  readonly created: boolean
}

export function loadTls(certFile: string, keyFile: string, created = false): TlsMaterial {
  const cert = readFileSync(certFile)
  const key = readFileSync(keyFile)
  return { cert, key, certFile, keyFile, fingerprint256: new X509Certificate(cert).fingerprint256, created }
}

/** Returns DIR/tls.crt and DIR/tls.key, creating them on first use. */
export function ensureSelfSigned(dir: string, hostName: string, addresses: readonly string[]): TlsMaterial {
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  if (existsSync(certFile) && existsSync(keyFile)) return loadTls(certFile, keyFile)
  const host = hostName.replace(/\.$/, '')
  const san = [`DNS:${host}`, ...addresses.map((a) => `IP:${a}`)].join(',')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '3650',
      '-subj',
      `/CN=${host}`,
      '-addext',
      `subjectAltName=${san}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  chmodSync(keyFile, 0o600)
  return loadTls(certFile, keyFile, true)
}
