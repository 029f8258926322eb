// Per-host IKE signing keys (issue 8): generated on first start and kept in the state directory, the
// public half published in DNS for the user's other hosts. Revoking a host = removing its record.
// Record format (TXT under the host's autotunnel name): "v=at-ike1; k=ed25519; p=<base64 SPKI DER>".

import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { HostKeyAlg } from './auth.js'

export interface HostKey {
  readonly alg: HostKeyAlg
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
}

export const HOST_KEY_FILE = 'ike-host-key.pem'
const RECORD_VERSION = 'at-ike1'

export function generateHostKey(alg: HostKeyAlg = 'ed25519'): HostKey {
  const kp = alg === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { alg, privateKey: kp.privateKey, publicKey: kp.publicKey }
}

function algOf(k: KeyObject): HostKeyAlg | undefined {
  if (k.asymmetricKeyType === 'ed25519') return 'ed25519'
  if (k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-p256'
  return undefined
}

/** A host key from its PKCS#8 PEM (Ed25519 or ECDSA P-256); `source` names it in the error. */
export function hostKeyFromPem(pem: string | Buffer, source = 'host key'): HostKey {
  const privateKey = createPrivateKey(pem)
  const alg = algOf(privateKey)
  if (!alg) throw new TypeError(`${source}: unsupported key type`)
  return { alg, privateKey, publicKey: createPublicKey(privateKey) }
}

/** Loads `<stateDir>/ike-host-key.pem`, creating it (mode 0600) with a new key of `alg` when absent. */
export async function loadOrCreateHostKey(stateDir: string, alg: HostKeyAlg = 'ed25519'): Promise<HostKey> {
  const path = join(stateDir, HOST_KEY_FILE)
  try {
    return hostKeyFromPem(await readFile(path), path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
  const k = generateHostKey(alg)
  await mkdir(stateDir, { recursive: true, mode: 0o700 })
  await writeFile(path, k.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' })
  return k
}

/** The TXT record text publishing `publicKey`. */
export function encodePublicKeyRecord(publicKey: KeyObject): string {
  const a = algOf(publicKey)
  if (!a) throw new TypeError('unsupported public key type')
  return `v=${RECORD_VERSION}; k=${a}; p=${publicKey.export({ format: 'der', type: 'spki' }).toString('base64')}`
}

/** Parses a record made by encodePublicKeyRecord; undefined for anything else (other TXT data, bad keys). */
export function parsePublicKeyRecord(txt: string): KeyObject | undefined {
  const fields = new Map<string, string>()
  for (const part of txt.split(';')) {
    const i = part.indexOf('=')
    if (i > 0) fields.set(part.slice(0, i).trim(), part.slice(i + 1).trim())
  }
  if (fields.get('v') !== RECORD_VERSION) return undefined
  const p = fields.get('p')
  if (!p) return undefined
  try {
    const k = createPublicKey({ key: Buffer.from(p, 'base64'), format: 'der', type: 'spki' })
    return algOf(k) === fields.get('k') ? k : undefined
  } catch {
    return undefined
  }
}

/** Every valid key record among a name's TXT strings (other TXT data is ignored): PeerInfo.publicKeys. */
export function publicKeysFromTxt(txts: readonly string[]): KeyObject[] {
  return txts.map(parsePublicKeyRecord).filter((k): k is KeyObject => k !== undefined)
}

/** PEM (SubjectPublicKeyInfo) for strongSwan's `pubkeys` and other tools. */
export function publicKeyPem(publicKey: KeyObject): string {
  return publicKey.export({ format: 'pem', type: 'spki' }).toString()
}
