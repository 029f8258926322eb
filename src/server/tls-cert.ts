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
  /** Set when a self-signed certificate was remade because it did not cover the names: the old fingerprint. */
  readonly replaced?: string
}

export function loadTls(certFile: string, keyFile: string, created = false): TlsMaterial {
  const cert = readFileSync(certFile)
  const key = readFileSync(keyFile)
  return { cert, key, certFile, keyFile, fingerprint256: new X509Certificate(cert).fingerprint256, created }
}

/**
 * Returns DIR/tls.crt and DIR/tls.key, creating them on first use, and making them again when the certificate
 * (self-signed, ours) does not cover the server name and every advertised address: a certificate made when the
 * server advertised other addresses would fail every client's check (issue 13 finding 1).
 */
export function ensureSelfSigned(dir: string, hostName: string, addresses: readonly string[]): TlsMaterial {
  const certFile = join(dir, 'tls.crt')
  const keyFile = join(dir, 'tls.key')
  const host = hostName.replace(/\.$/, '')
  let replaced: string | undefined
  if (existsSync(certFile) && existsSync(keyFile)) {
    const tls = loadTls(certFile, keyFile)
    const x = new X509Certificate(tls.cert)
    const selfSigned = x.issuer === x.subject
    if (!selfSigned || (x.checkHost(host) !== undefined && addresses.every((a) => x.checkIP(a) !== undefined)))
      return tls
    replaced = tls.fingerprint256
  }
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
  const made = loadTls(certFile, keyFile, true)
  return replaced ? { ...made, replaced } : made
}
