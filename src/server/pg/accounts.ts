// Accounts in the PostgreSQL store: the operations of accounts.ts and account-cli.ts (revoke-host) on the shared
// database. Each runs in one transaction that also writes the change-feed rows ('account', and 'rr' per RRset
// deleted) and rings the doorbell after COMMIT, so every node reloads its key ring within the feed delay.
import type pg from 'pg'
import { type AccountAlgorithm, accountKeyName, isAccountAlgorithm } from '../../dns/account-key.js'
import { type Account, AccountError } from '../accounts.js'
import { SCHEMA } from './schema.js'
import { pgSetRevoked } from './sso.js'

/** The NOTIFY channel of the change feed (a doorbell: the feed rows are the data). */
export const FEED_CHANNEL = 'autotunnel_change'

interface Row {
  username: string
  key_name: string
  algorithm: string
  secret: Buffer
  derived: boolean
  created_ms: string
  max_records: number | null
}

function fromRow(r: Row): Account {
  if (!isAccountAlgorithm(r.algorithm))
    throw new AccountError(`account ${r.username}: unknown algorithm ${r.algorithm}`)
  return {
    user: r.username,
    keyName: r.key_name,
    algorithm: r.algorithm,
    secret: r.secret,
    derived: r.derived,
    createdMs: Number(r.created_ms),
    ...(r.max_records !== null ? { maxRecords: r.max_records } : {}),
  }
}

const SELECT = `SELECT a.username, a.key_name, a.algorithm, a.secret, a.derived, a.created_ms, l.max_records
  FROM ${SCHEMA}.account a LEFT JOIN ${SCHEMA}.account_limit l USING (username)`

export async function pgListAccounts(q: pg.ClientBase | pg.Pool): Promise<Account[]> {
  return (await q.query<Row>(`${SELECT} ORDER BY a.username`)).rows.map(fromRow)
}

async function get(q: pg.ClientBase, user: string): Promise<Account | undefined> {
  const r = (await q.query<Row>(`${SELECT} WHERE a.username = $1`, [user])).rows[0]
  return r ? fromRow(r) : undefined
}

/** Runs `fn` in a transaction that records an 'account' change, then rings the doorbell. */
export async function inTx<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect()
  try {
    await c.query('BEGIN')
    let out: T
    try {
      out = await fn(c)
      await c.query(`INSERT INTO ${SCHEMA}.change (node, kind) VALUES ('', 'account')`)
      await c.query('COMMIT')
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {})
      throw e
    }
    // Outside the data transaction: a notifying COMMIT takes a database-wide lock (docs/cluster.md).
    await c.query('SELECT pg_notify($1, $2)', [FEED_CHANNEL, '']).catch(() => {})
    return out
  } finally {
    c.release()
  }
}

export function pgAddAccount(
  pool: pg.Pool,
  zone: string,
  a: { user: string; algorithm: AccountAlgorithm; secret: Buffer; derived: boolean; nowMs: number },
): Promise<Account> {
  return inTx(pool, async (c) => {
    try {
      await c.query(
        `INSERT INTO ${SCHEMA}.account (username, key_name, algorithm, secret, derived, created_ms, changed_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $6)`,
        [a.user, accountKeyName(a.user, zone), a.algorithm, a.secret, a.derived, a.nowMs],
      )
    } catch (e) {
      if ((e as { code?: string }).code === '23505') throw new AccountError(`account ${a.user} exists`)
      throw e
    }
    return (await get(c, a.user))!
  })
}

export function pgSetAccountSecret(
  pool: pg.Pool,
  user: string,
  s: { algorithm: AccountAlgorithm; secret: Buffer; derived: boolean; nowMs: number },
): Promise<Account> {
  return inTx(pool, async (c) => {
    const r = await c.query(
      `UPDATE ${SCHEMA}.account SET algorithm = $1, secret = $2, derived = $3, changed_ms = $4 WHERE username = $5`,
      [s.algorithm, s.secret, s.derived, s.nowMs, user],
    )
    if (r.rowCount === 0) throw new AccountError(`no account ${user}`)
    return (await get(c, user))!
  })
}

export function pgSetAccountLimit(
  pool: pg.Pool,
  user: string,
  maxRecords: number | undefined,
  nowMs: number,
): Promise<Account> {
  return inTx(pool, async (c) => {
    const r = await c.query(`UPDATE ${SCHEMA}.account SET changed_ms = $1 WHERE username = $2`, [nowMs, user])
    if (r.rowCount === 0) throw new AccountError(`no account ${user}`)
    if (maxRecords === undefined) await c.query(`DELETE FROM ${SCHEMA}.account_limit WHERE username = $1`, [user])
    else
      await c.query(
        `INSERT INTO ${SCHEMA}.account_limit (username, max_records) VALUES ($1, $2)
         ON CONFLICT (username) DO UPDATE SET max_records = excluded.max_records`,
        [user, maxRecords],
      )
    return (await get(c, user))!
  })
}

/** Deletes rows matching `where` (with `args`) and writes one 'rr' change per RRset; returns the rows deleted. */
async function deleteRecords(c: pg.ClientBase, where: string, args: unknown[]): Promise<number> {
  const r = await c.query(
    `WITH d AS (DELETE FROM ${SCHEMA}.rr WHERE ${where} RETURNING name, type),
          ch AS (INSERT INTO ${SCHEMA}.change (node, kind, name, type) SELECT DISTINCT '', 'rr', name, type FROM d)
     SELECT count(*)::int AS n FROM d`,
    args,
  )
  return (r.rows[0] as { n: number }).n
}

/** Removes the account and every record at or below its domain; returns the records removed. */
export function pgRemoveAccount(pool: pg.Pool, zone: string, user: string): Promise<number> {
  const d = accountKeyName(user, zone)
  return inTx(pool, async (c) => {
    const r = await c.query(`DELETE FROM ${SCHEMA}.account WHERE username = $1`, [user])
    if (r.rowCount === 0) throw new AccountError(`no account ${user}`)
    return deleteRecords(c, 'name = $1 OR right(name, length($1) + 1) = $2', [d, `.${d}`])
  })
}

const HOST_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** `account revoke-host` on PostgreSQL: what revokeHostInDb (account-cli.ts) deletes, as one transaction. */
export function pgRevokeHost(pool: pg.Pool, zone: string, user: string, host: string): Promise<string[]> {
  const h = host.toLowerCase()
  if (!HOST_LABEL.test(h)) throw new AccountError(`invalid host name ${JSON.stringify(host)}: one label`)
  const d = `${user}.${zone}`
  const hostName = `${h}.${d}`
  const srvName = `_autotunnel._udp.${hostName}`
  const fqLower = (t: string): string => (t.endsWith('.') ? t : `${t}.`).toLowerCase()
  return inTx(pool, async (c) => {
    if ((await c.query(`SELECT 1 FROM ${SCHEMA}.account WHERE username = $1`, [user])).rowCount === 0)
      throw new AccountError(`no account ${user}`)
    const texts = async (name: string, type: number): Promise<string[]> =>
      (
        await c.query<{ text: string }>(`SELECT text FROM ${SCHEMA}.rr WHERE name = $1 AND type = $2`, [name, type])
      ).rows.map((r) => r.text)
    const targets = (await texts(srvName, 33))
      .map((t) => fqLower(t.split(' ').at(-1) ?? ''))
      .filter((t) => t.endsWith(`.${d}`))
    const types = (await texts(`_services._dns-sd._udp.${d}`, 12)).map(fqLower).filter((t) => t.endsWith(`.${d}`))
    const touched: string[] = []
    for (const name of [hostName, srvName, ...targets, ...types.map((t) => `${h}.${t}`)])
      if ((await deleteRecords(c, 'name = $1', [name])) > 0) touched.push(name)
    for (const [list, target] of [[`_autotunnel._udp.${d}`, srvName], ...types.map((t) => [t, `${h}.${t}`])] as [
      string,
      string,
    ][])
      if ((await deleteRecords(c, 'name = $1 AND type = 12 AND lower(text) = $2', [list, target])) > 0)
        touched.push(`${list} PTR ${target}`)
    // In the same transaction: every node refuses the host's records and certificates from this commit on.
    await pgSetRevoked(c, user, h, true, Date.now())
    return touched
  })
}

/** `account unrevoke-host` on PostgreSQL: whether the host was revoked. */
export function pgUnrevokeHost(pool: pg.Pool, user: string, host: string): Promise<boolean> {
  const h = host.toLowerCase()
  if (!HOST_LABEL.test(h)) throw new AccountError(`invalid host name ${JSON.stringify(host)}: one label`)
  return inTx(pool, (c) => pgSetRevoked(c, user, h, false, Date.now()))
}
