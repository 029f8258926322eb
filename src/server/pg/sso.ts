// The SSO state of a cluster (sso-state.ts) in the shared PostgreSQL database, so that every node issues
// certificates from one CA per account and refuses the same revoked hosts. Enrolments are rare (a host's first
// start and its renewals), so each request reads the tables afresh: no cache to invalidate when an account is
// removed and added again, or a host is revoked through another node. The UPDATE path, which must not pay a
// round trip, reads the revoked list from memory instead: the node loads it with the accounts and again at every
// 'account' row of the feed (store.ts), and a mark writes such a row.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type pg from 'pg'
import type { Logger } from '../../io/log.js'
import { createAccountCa } from '../../sso/certs.js'
import type { CertKindCode } from '../../sso/enrol-codec.js'
import { AccountError } from '../accounts.js'
import { accountSsoDir } from '../sso-ca-store.js'
import type { CaPem, SsoState } from '../sso-state.js'
import { inTx } from './accounts.js'
import { SCHEMA } from './schema.js'

/** Every account's revoked hosts (users and hosts lower case): what a node keeps for its UPDATE path. */
export async function pgListRevoked(q: pg.ClientBase | pg.Pool): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>()
  const rows = (await q.query<{ username: string; host: string }>(`SELECT username, host FROM ${SCHEMA}.revoked_host`))
    .rows
  for (const r of rows) {
    const u = r.username.toLowerCase()
    let s = out.get(u)
    if (!s) out.set(u, (s = new Set()))
    s.add(r.host)
  }
  return out
}

/**
 * Marks (or unmarks) a revoked host in a transaction of inTx (an 'account' feed row, then the doorbell); marking
 * deletes the host's issued certificates. Whether the mark changed. Used by the SSO service (ATREVOKE) and the
 * CLI (`account revoke-host`, `unrevoke-host`).
 */
export async function pgSetRevoked(
  c: pg.ClientBase,
  user: string,
  host: string,
  revoked: boolean,
  nowMs: number,
): Promise<boolean> {
  if ((await c.query(`SELECT 1 FROM ${SCHEMA}.account WHERE username = $1 FOR SHARE`, [user])).rowCount === 0)
    throw new AccountError(`no account ${user}`)
  const h = host.toLowerCase()
  if (!revoked)
    return (
      ((await c.query(`DELETE FROM ${SCHEMA}.revoked_host WHERE username = $1 AND host = $2`, [user, h])).rowCount ??
        0) > 0
    )
  await c.query(`DELETE FROM ${SCHEMA}.sso_cert WHERE username = $1 AND host = $2`, [user, h])
  const r = await c.query(
    `INSERT INTO ${SCHEMA}.revoked_host (username, host, revoked_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    [user, h, nowMs],
  )
  return (r.rowCount ?? 0) > 0
}

export class PgSsoState implements SsoState {
  readonly #pool: pg.Pool
  readonly #log: Logger
  readonly #legacyDir: string | undefined
  readonly #now: () => number
  readonly #onRevoked: (user: string, host: string, revoked: boolean) => void

  /**
   * `legacyDir`: a data directory where this node kept CAs before the cluster shared them; an account's CA found
   * there is adopted when the database has none yet, so the hosts it certified stay trusted.
   * `onRevoked`: tells this node's UPDATE path at once (the feed tells the others).
   */
  constructor(
    deps: { pool: pg.Pool; log: Logger; now?: () => number },
    o: { legacyDir?: string | undefined; onRevoked?: (user: string, host: string, revoked: boolean) => void } = {},
  ) {
    this.#pool = deps.pool
    this.#log = deps.log
    this.#now = deps.now ?? Date.now
    this.#legacyDir = o.legacyDir
    this.#onRevoked = o.onRevoked ?? (() => {})
  }

  async ca(user: string, domain: string): Promise<CaPem> {
    const u = user.toLowerCase()
    const read = async (): Promise<CaPem | undefined> => {
      const r = (
        await this.#pool.query<{ cert_pem: string; key_pem: string }>(
          `SELECT cert_pem, key_pem FROM ${SCHEMA}.sso_ca WHERE username = $1`,
          [u],
        )
      ).rows[0]
      return r ? { certPem: r.cert_pem, keyPem: r.key_pem } : undefined
    }
    const have = await read()
    if (have) return have
    const made = this.#legacy(u) ?? (await createAccountCa(u, domain.replace(/\.$/, '')))
    // Two nodes may make one at the same time: the first INSERT wins and both return what the table holds.
    const r = await this.#pool.query(
      `INSERT INTO ${SCHEMA}.sso_ca (username, cert_pem, key_pem, created_ms) VALUES ($1, $2, $3, $4)
       ON CONFLICT (username) DO NOTHING`,
      [u, made.certPem, made.keyPem, this.#now()],
    )
    if (r.rowCount) this.#log.info('sso.ca_stored', { user: u, adopted: 'file' in made })
    const won = await read()
    if (!won) throw new AccountError(`no account ${u}`)
    return won
  }

  #legacy(user: string): (CaPem & { file: string }) | undefined {
    if (!this.#legacyDir) return undefined
    const dir = accountSsoDir(this.#legacyDir, user)
    try {
      return {
        certPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
        keyPem: readFileSync(join(dir, 'ca-key.pem'), 'utf8'),
        file: dir,
      }
    } catch {
      return undefined
    }
  }

  async isRevoked(user: string, host: string): Promise<boolean> {
    const r = await this.#pool.query(`SELECT 1 FROM ${SCHEMA}.revoked_host WHERE username = $1 AND host = $2`, [
      user.toLowerCase(),
      host.toLowerCase(),
    ])
    return (r.rowCount ?? 0) > 0
  }

  async setRevoked(user: string, host: string, revoked: boolean): Promise<boolean> {
    const u = user.toLowerCase()
    const changed = await inTx(this.#pool, (c) => pgSetRevoked(c, u, host, revoked, this.#now()))
    this.#onRevoked(u, host.toLowerCase(), revoked)
    return changed
  }

  async issued(user: string, host: string): Promise<ReadonlyMap<CertKindCode, Buffer>> {
    const rows = (
      await this.#pool.query<{ kind: number; der: Buffer }>(
        `SELECT kind, der FROM ${SCHEMA}.sso_cert WHERE username = $1 AND host = $2 ORDER BY kind`,
        [user.toLowerCase(), host.toLowerCase()],
      )
    ).rows
    return new Map(rows.map((r) => [r.kind as CertKindCode, r.der]))
  }

  async putIssued(user: string, host: string, kind: CertKindCode, der: Buffer): Promise<void> {
    // Not for a host revoked through another node since this request was authorised.
    await this.#pool.query(
      `INSERT INTO ${SCHEMA}.sso_cert (username, host, kind, der, issued_ms)
       SELECT $1::text, $2::text, $3::integer, $4::bytea, $5::bigint WHERE NOT EXISTS
         (SELECT 1 FROM ${SCHEMA}.revoked_host WHERE username = $1 AND host = $2)
       ON CONFLICT (username, host, kind) DO UPDATE SET der = excluded.der, issued_ms = excluded.issued_ms`,
      [user.toLowerCase(), host.toLowerCase(), kind, der, this.#now()],
    )
  }
}
