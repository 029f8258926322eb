// The server's SSO state on disk, beside the account store (docs/sso.md): one directory per account,
//   DATA/sso/USER/ca.pem          the account CA certificate
//   DATA/sso/USER/ca-key.pem      its private key: 0600, like the store that holds the TSIG secrets
//   DATA/sso/USER/revoked-hosts   host labels that get no certificate any more, one a line
// Directories are 0700. The revoked list is read at every request, so `autotunnel account revoke-host` (another
// process) takes effect at once.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ensureOwnerOnly } from '../io/secret-file.js'
import { type CaMaterial, createAccountCa, loadCa } from '../sso/certs.js'
import type { CertKindCode } from '../sso/enrol-codec.js'
import type { RevokedHostsFile } from './revoked-hosts.js'
import type { CaPem, SsoState } from './sso-state.js'

const DIR_MODE = 0o700
const SECRET_MODE = 0o600
const PUBLIC_MODE = 0o644
export const SSO_DIR = 'sso'
export const REVOKED_FILE = 'revoked-hosts'

export function accountSsoDir(dataDir: string, user: string): string {
  return join(dataDir, SSO_DIR, user.toLowerCase())
}

function readOrUndefined(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

function writeAtomic(file: string, text: string, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`
  writeFileSync(tmp, text, { mode })
  renameSync(tmp, file)
}

export function revokedHosts(dataDir: string, user: string): Set<string> {
  const text = readOrUndefined(join(accountSsoDir(dataDir, user), REVOKED_FILE)) ?? ''
  return new Set(
    text
      .split('\n')
      .map((l) => l.trim().toLowerCase())
      .filter((l) => l && !l.startsWith('#')),
  )
}

/** Adds (or with `revoked` false removes) `host` to the account's revoked list; returns whether it changed. */
export function setHostRevoked(dataDir: string, user: string, host: string, revoked = true): boolean {
  const dir = accountSsoDir(dataDir, user)
  mkdirSync(dir, { recursive: true, mode: DIR_MODE })
  const set = revokedHosts(dataDir, user)
  const h = host.toLowerCase()
  if (set.has(h) === revoked) return false
  if (revoked) set.add(h)
  else set.delete(h)
  writeAtomic(
    join(dir, REVOKED_FILE),
    [...set]
      .sort()
      .map((x) => `${x}\n`)
      .join(''),
    PUBLIC_MODE,
  )
  return true
}

/** The account's CA, made on first use. Callers serialise per account (SsoService does). */
export class CaStore {
  readonly #dataDir: string
  readonly #cache = new Map<string, { material: CaMaterial; certPem: string; keyPem: string }>()

  constructor(dataDir: string) {
    this.#dataDir = dataDir
  }

  async get(user: string, domain: string): Promise<{ material: CaMaterial; certPem: string; keyPem: string }> {
    const u = user.toLowerCase()
    const hit = this.#cache.get(u)
    if (hit) return hit
    const dir = accountSsoDir(this.#dataDir, u)
    mkdirSync(dir, { recursive: true, mode: DIR_MODE })
    const certFile = join(dir, 'ca.pem')
    const keyFile = join(dir, 'ca-key.pem')
    let certPem = readOrUndefined(certFile)
    let keyPem = readOrUndefined(keyFile)
    if (certPem === undefined || keyPem === undefined) {
      const ca = await createAccountCa(u, domain.replace(/\.$/, ''))
      ensureOwnerOnly(keyFile)
      writeAtomic(keyFile, ca.keyPem, SECRET_MODE)
      writeAtomic(certFile, ca.certPem, PUBLIC_MODE)
      certPem = ca.certPem
      keyPem = ca.keyPem
    } else ensureOwnerOnly(keyFile)
    const entry = { material: await loadCa(certPem, keyPem), certPem, keyPem }
    this.#cache.set(u, entry)
    return entry
  }
}

/**
 * The SSO state of one node (sso-state.ts) in its data directory. Issued certificates are kept in memory only: an
 * agent that finds none after a restart of the server enrols again.
 */
export class FileSsoState implements SsoState {
  readonly #dataDir: string
  readonly #cas: CaStore
  readonly #revoked: RevokedHostsFile | undefined
  readonly #issued = new Map<string, Map<CertKindCode, Buffer>>()

  /** `revoked`: the UPDATE path's cached view of the same files, told when a mark changes. */
  constructor(dataDir: string, revoked?: RevokedHostsFile) {
    this.#dataDir = dataDir
    this.#cas = new CaStore(dataDir)
    this.#revoked = revoked
  }

  async ca(user: string, domain: string): Promise<CaPem> {
    const { certPem, keyPem } = await this.#cas.get(user, domain)
    return { certPem, keyPem }
  }

  async isRevoked(user: string, host: string): Promise<boolean> {
    return revokedHosts(this.#dataDir, user).has(host.toLowerCase())
  }

  async setRevoked(user: string, host: string, revoked: boolean): Promise<boolean> {
    const changed = setHostRevoked(this.#dataDir, user, host, revoked)
    if (revoked) this.#issued.delete(issuedKey(user, host))
    this.#revoked?.forget(user)
    return changed
  }

  async issued(user: string, host: string): Promise<ReadonlyMap<CertKindCode, Buffer>> {
    return this.#issued.get(issuedKey(user, host)) ?? new Map()
  }

  async putIssued(user: string, host: string, kind: CertKindCode, der: Buffer): Promise<void> {
    const k = issuedKey(user, host)
    const m = this.#issued.get(k) ?? new Map<CertKindCode, Buffer>()
    m.set(kind, der)
    this.#issued.set(k, m)
  }
}

const issuedKey = (user: string, host: string): string => `${user.toLowerCase()}/${host.toLowerCase()}`
