// Accounts: a user owns USER.ZONE and one TSIG key whose name is that domain (see src/dns/account-key.ts for the
// key derivation). The CLI edits the account table while the server runs; the server's KeyRing notices through
// SQLite's data_version (a per-connection counter that moves when another connection commits), checked on a key
// miss and at most once a second otherwise, so new accounts, removals and password changes take effect without a
// restart or signal.

import { type AccountAlgorithm, accountKeyName, isAccountAlgorithm, isValidUser } from '../dns/account-key.js'
import type { Clock } from '../io/clock.js'
import { type Db, getMeta, nextSerial, setMeta } from './db.js'
import { isAtOrBelow } from './zone-index.js'

export interface Account {
  readonly user: string
  /** USER.ZONE. (also the TSIG key name) */
  readonly keyName: string
  readonly algorithm: AccountAlgorithm
  readonly secret: Buffer
  /** True when the secret was derived from a password. */
  readonly derived: boolean
  readonly createdMs: number
  /** Records the account may hold (`account limit`); undefined: the server's default. */
  readonly maxRecords?: number | undefined
}

/** Labels kept for the service's own names (the default server name is ns.ZONE): never an account. */
export const RESERVED_USERS: ReadonlySet<string> = new Set(['ns', 'ns1', 'ns2', 'hostmaster', 'www'])

/**
 * True when `label` could be, now or later, an account's user name. Everything under such a label is private to
 * that user, whether the account exists or not, so unsigned clients cannot tell which accounts exist and cannot
 * watch a name before its account is created (issue 16 findings 3 and 9).
 */
export function isPossibleUser(label: string): boolean {
  return isValidUser(label) && !RESERVED_USERS.has(label)
}

export class AccountError extends Error {
  override readonly name = 'AccountError'
}

interface Row {
  user: string
  key_name: string
  algorithm: string
  secret: Buffer
  derived: number
  created_ms: number
  max_records: number | null
}

function fromRow(r: Row): Account {
  if (!isAccountAlgorithm(r.algorithm)) throw new AccountError(`account ${r.user}: unknown algorithm ${r.algorithm}`)
  return {
    user: r.user,
    keyName: r.key_name,
    algorithm: r.algorithm,
    secret: r.secret,
    derived: r.derived !== 0,
    createdMs: r.created_ms,
    ...(r.max_records !== null ? { maxRecords: r.max_records } : {}),
  }
}

const SELECT_ACCOUNT = 'SELECT account.*, account_limit.max_records FROM account LEFT JOIN account_limit USING (user)'

export function listAccounts(db: Db): Account[] {
  return (db.prepare(`${SELECT_ACCOUNT} ORDER BY user`).all() as Row[]).map(fromRow)
}

export function getAccount(db: Db, user: string): Account | undefined {
  const r = db.prepare(`${SELECT_ACCOUNT} WHERE user = ?`).get(user) as Row | undefined
  return r ? fromRow(r) : undefined
}

export function addAccount(
  db: Db,
  zone: string,
  a: { user: string; algorithm: AccountAlgorithm; secret: Buffer; derived: boolean; nowMs: number },
): Account {
  const keyName = accountKeyName(a.user, zone)
  try {
    db.prepare(
      'INSERT INTO account (user, key_name, algorithm, secret, derived, created_ms, changed_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(a.user, keyName, a.algorithm, a.secret, a.derived ? 1 : 0, a.nowMs, a.nowMs)
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT'))
      throw new AccountError(`account ${a.user} exists`)
    throw e
  }
  return getAccount(db, a.user)!
}

export function setAccountSecret(
  db: Db,
  user: string,
  s: { algorithm: AccountAlgorithm; secret: Buffer; derived: boolean; nowMs: number },
): Account {
  const r = db
    .prepare('UPDATE account SET algorithm = ?, secret = ?, derived = ?, changed_ms = ? WHERE user = ?')
    .run(s.algorithm, s.secret, s.derived ? 1 : 0, s.nowMs, user)
  if (r.changes === 0) throw new AccountError(`no account ${user}`)
  return getAccount(db, user)!
}

/** Sets the account's record limit (`account limit USER --max-records N`); undefined returns it to the default. */
export function setAccountLimit(db: Db, user: string, maxRecords: number | undefined, nowMs: number): Account {
  return db.transaction(() => {
    const r = db.prepare('UPDATE account SET changed_ms = ? WHERE user = ?').run(nowMs, user)
    if (r.changes === 0) throw new AccountError(`no account ${user}`)
    if (maxRecords === undefined) db.prepare('DELETE FROM account_limit WHERE user = ?').run(user)
    else
      db.prepare(
        'INSERT INTO account_limit (user, max_records) VALUES (?, ?) ON CONFLICT (user) DO UPDATE SET max_records = excluded.max_records',
      ).run(user, maxRecords)
    return getAccount(db, user)!
  })()
}

/**
 * Removes the account and every record at or below its domain, in one transaction, bumping the serial and the
 * external generation so a running server reloads its index (Store.checkExternal). Returns the records removed.
 */
export function removeAccount(db: Db, zone: string, user: string): number {
  const keyName = accountKeyName(user, zone)
  return db.transaction(() => {
    const r = db.prepare('DELETE FROM account WHERE user = ?').run(user)
    if (r.changes === 0) throw new AccountError(`no account ${user}`)
    db.prepare('DELETE FROM account_limit WHERE user = ?').run(user)
    const names = db.prepare('SELECT DISTINCT name FROM rr').pluck().all() as string[]
    const del = db.prepare('DELETE FROM rr WHERE name = ?')
    let n = 0
    for (const name of names) if (isAtOrBelow(name, keyName)) n += del.run(name).changes
    if (n > 0) setMeta(db, 'serial', String(nextSerial(Number(getMeta(db, 'serial') ?? '1'))))
    setMeta(db, 'external_gen', String(Number(getMeta(db, 'external_gen') ?? '0') + 1))
    return n
  })()
}

/** True when `a` and `b` are the same key of the same account (not a re-keyed or re-created one). */
export function sameKey(a: Account, b: Account): boolean {
  return a.user === b.user && a.algorithm === b.algorithm && a.createdMs === b.createdMs && a.secret.equals(b.secret)
}

/** What a reload changed: users whose key changed or whose account went (`revoked`), and new users. */
export interface AccountChange {
  readonly revoked: ReadonlySet<string>
  readonly added: ReadonlySet<string>
}

/** The server's view of the account keys, refreshed when another process commits. */
export class KeyRing {
  readonly #list: () => Account[]
  readonly #clock: Clock
  readonly #onExternal: () => boolean
  readonly #listeners = new Set<(c: AccountChange) => void>()
  #byKeyName = new Map<string, Account>()
  #byUser = new Map<string, Account>()
  #checkedMs = -Infinity
  /** Incremented on every reload, so caches that depend on the account set can tell. */
  generation = 0

  /**
   * `checkExternal` reports whether another connection committed since the last call (Store.checkExternal); the
   * accounts come from `db` (SQLite) or `list` (the PostgreSQL store's copy, kept current by its change feed).
   */
  constructor(deps: { db?: Db; list?: () => Account[]; clock: Clock; checkExternal: () => boolean }) {
    const db = deps.db
    const list = deps.list ?? (db ? () => listAccounts(db) : undefined)
    if (!list) throw new TypeError('KeyRing needs db or list')
    this.#list = list
    this.#clock = deps.clock
    this.#onExternal = deps.checkExternal
    this.reload()
  }

  get size(): number {
    return this.#byKeyName.size
  }

  /**
   * Calls `fn` after every reload that changed the account set: watch sessions and LLQs bound to a revoked key
   * end, and every watch is checked again (docs/security.md). Returns the unsubscribe function.
   */
  onChange(fn: (c: AccountChange) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** The account's key is still the one in the table (not changed by `account passwd`, not removed). */
  isCurrent(a: Account): boolean {
    const now = this.#byUser.get(a.user)
    return now !== undefined && (now === a || sameKey(now, a))
  }

  reload(): void {
    const byKey = new Map<string, Account>()
    const byUser = new Map<string, Account>()
    for (const a of this.#list()) {
      byKey.set(a.keyName, a)
      byUser.set(a.user, a)
    }
    const revoked = new Set<string>()
    const added = new Set<string>()
    for (const [user, old] of this.#byUser) {
      const now = byUser.get(user)
      if (!now || !sameKey(old, now)) revoked.add(user)
    }
    for (const user of byUser.keys()) if (!this.#byUser.has(user)) added.add(user)
    this.#byKeyName = byKey
    this.#byUser = byUser
    this.generation++
    if (revoked.size === 0 && added.size === 0) return
    for (const fn of this.#listeners) fn({ revoked, added })
  }

  /** Re-reads the table if another process committed; at most once per `minIntervalMs` unless forced. */
  refresh(force = false, minIntervalMs = 1000): void {
    const now = this.#clock.monotonic()
    if (!force && now - this.#checkedMs < minIntervalMs) return
    this.#checkedMs = now
    if (this.#onExternal()) this.reload()
  }

  /** The account whose key is named `keyName` (lower-case FQDN), as the table is now. */
  byKeyName(keyName: string): Account | undefined {
    // Checked on every signed message (a pragma read, microseconds next to the HMAC), so a removed or
    // re-keyed account stops working at once.
    this.refresh(false, 0)
    return this.#byKeyName.get(keyName)
  }

  byUser(user: string): Account | undefined {
    this.refresh()
    const a = this.#byUser.get(user)
    if (a) return a
    this.refresh(false, 10)
    return this.#byUser.get(user)
  }
}
