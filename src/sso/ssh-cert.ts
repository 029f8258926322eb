// OpenSSH host certificates signed by the account CA (OpenSSH PROTOCOL.certkeys; RFC 4251 5 data types, RFC 5656
// for ECDSA keys and signatures). The CA is the account's P-256 X.509 CA key: one trust anchor for Kerberos and SSH.
// Clients trust it through `@cert-authority NAMES ecdsa-sha2-nistp256 ...` in the system known-hosts file.
//
//   string  "<keytype>-cert-v01@openssh.com"   string nonce   <the key's fields after its type string>
//   uint64  serial   uint32 type (2 = host)   string key id   string valid principals (strings)
//   uint64  valid after   uint64 valid before   string critical options   string extensions   string reserved
//   string  signature key (the CA's public key blob)   string signature (over everything before it)
import { createPrivateKey, createPublicKey, randomBytes, sign } from 'node:crypto'

export class SshKeyError extends Error {
  override readonly name = 'SshKeyError'
}

export const SSH_CERT_HOST = 2
const NONCE_BYTES = 32
const U32 = 4
const U64 = 8
const P256_POINT = 65
const ED25519_KEY = 32
const MAX_FIELD = 16_384
/** Host key types we certify (RSA keys of Debian's sshd are skipped: ed25519 and ECDSA suffice for every client). */
export const SSH_HOST_KEY_TYPES = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521']

export function sshString(b: Buffer | string): Buffer {
  const body = Buffer.isBuffer(b) ? b : Buffer.from(b)
  const len = Buffer.alloc(U32)
  len.writeUInt32BE(body.length)
  return Buffer.concat([len, body])
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(U32)
  b.writeUInt32BE(n)
  return b
}

function u64(n: bigint): Buffer {
  const b = Buffer.alloc(U64)
  b.writeBigUInt64BE(n)
  return b
}

/** RFC 4251 mpint of a non-negative big-endian integer. */
function mpint(v: Buffer): Buffer {
  let i = 0
  while (i < v.length && v[i] === 0) i++
  const t = v.subarray(i)
  return sshString(t.length && (t[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), t]) : t)
}

/** Reads the strings of an SSH wire blob (each a uint32 length then bytes). */
export function readSshStrings(blob: Buffer, max = 8): Buffer[] {
  const out: Buffer[] = []
  let off = 0
  while (off < blob.length) {
    if (out.length >= max) throw new SshKeyError('too many fields')
    if (off + U32 > blob.length) throw new SshKeyError('truncated length')
    const len = blob.readUInt32BE(off)
    if (len > MAX_FIELD || off + U32 + len > blob.length) throw new SshKeyError('field runs past the end')
    out.push(blob.subarray(off + U32, off + U32 + len))
    off += U32 + len
  }
  return out
}

/** Checks a public host key blob (RFC 4253 6.6 / RFC 5656 3.1 / RFC 8709) and returns its type. */
export function checkHostKeyBlob(blob: Buffer): string {
  const f = readSshStrings(blob, 3)
  const type = f[0]?.toString('latin1') ?? ''
  if (!SSH_HOST_KEY_TYPES.includes(type))
    throw new SshKeyError(`host key type ${JSON.stringify(type)} is not certified`)
  if (type === 'ssh-ed25519') {
    if (f.length !== 2 || f[1]?.length !== ED25519_KEY) throw new SshKeyError('ssh-ed25519 key: want 32 octets')
  } else if (f.length !== 3 || f[1]?.toString('latin1') !== type.slice('ecdsa-sha2-'.length) || f[2]?.[0] !== 4)
    throw new SshKeyError(`${type} key: want the curve name and an uncompressed point`)
  return type
}

/** "TYPE BASE64 [comment]" (an .pub file) -> the blob. */
export function parsePublicKeyLine(line: string): Buffer {
  const [, b64] = line.trim().split(/\s+/)
  if (!b64) throw new SshKeyError('not an OpenSSH public key line')
  return Buffer.from(b64, 'base64')
}

/** The CA public key blob (ecdsa-sha2-nistp256) of a P-256 SPKI DER. */
export function p256SshBlob(spkiDer: Buffer): Buffer {
  const jwk = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' }).export({ format: 'jwk' })
  if (jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new SshKeyError('the CA key is not P-256')
  const q = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url')])
  if (q.length !== P256_POINT) throw new SshKeyError('bad P-256 point')
  return Buffer.concat([sshString('ecdsa-sha2-nistp256'), sshString('nistp256'), sshString(q)])
}

/** Signs a host certificate for `hostKey` (a public key blob) with the CA's P-256 private key (PKCS#8 PEM). */
export function signHostCertificate(o: {
  caKeyPem: string
  hostKey: Buffer
  keyId: string
  principals: readonly string[]
  validAfterSec: number
  validBeforeSec: number
  serial?: bigint
}): Buffer {
  const type = checkHostKeyBlob(o.hostKey)
  const caKey = createPrivateKey(o.caKeyPem)
  const caBlob = p256SshBlob(createPublicKey(caKey).export({ format: 'der', type: 'spki' }))
  const keyFields = o.hostKey.subarray(U32 + type.length)
  const tbs = Buffer.concat([
    sshString(`${type}-cert-v01@openssh.com`),
    sshString(randomBytes(NONCE_BYTES)),
    keyFields,
    u64(o.serial ?? randomBytes(U64).readBigUInt64BE()),
    u32(SSH_CERT_HOST),
    sshString(o.keyId),
    sshString(Buffer.concat(o.principals.map((p) => sshString(p)))),
    u64(BigInt(o.validAfterSec)),
    u64(BigInt(o.validBeforeSec)),
    sshString(''),
    sshString(''),
    sshString(''),
    sshString(caBlob),
  ])
  const rs = sign('sha256', tbs, { key: caKey, dsaEncoding: 'ieee-p1363' })
  const half = rs.length / 2
  const sig = Buffer.concat([
    sshString('ecdsa-sha2-nistp256'),
    sshString(Buffer.concat([mpint(rs.subarray(0, half)), mpint(rs.subarray(half))])),
  ])
  return Buffer.concat([tbs, sshString(sig)])
}

/** The one-line text form of a certificate blob (what ssh-keygen -s writes into KEY-cert.pub). */
export function certLine(cert: Buffer, comment: string): string {
  const type = readSshStrings(cert.subarray(0, U32 + cert.readUInt32BE(0)), 1)[0]?.toString('latin1') ?? ''
  return `${type} ${cert.toString('base64')} ${comment}\n`
}
