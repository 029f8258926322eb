// The `autotunnel account ...` actions (src/cli/account.ts parses the options).
import { closeSync, existsSync, fchmodSync, fstatSync, openSync, rmSync, writeSync } from 'node:fs'
import {
  type AccountAlgorithm,
  deriveTsigKeyAsync,
  fqdn,
  isAccountAlgorithm,
  isValidUser,
  randomTsigKey,
} from '../dns/account-key.js'
import {
  type Account,
  AccountError,
  addAccount,
  listAccounts,
  RESERVED_USERS,
  removeAccount,
  setAccountLimit,
  setAccountSecret,
} from './accounts.js'
import { type Db, getMeta, nextSerial, openDb, StoreError, setMeta, storedZone } from './db.js'
import { setHostRevoked } from './sso-ca-store.js'
import { resolveStore } from './store-spec.js'

type StoreOpts = { data?: string; store?: string }

/**
 * With a PostgreSQL store: runs `fn` on a pool to it (the schema created or migrated, the zone checked or, without
 * --zone, read from the database); undefined for a SQLite store, which the callers handle as before.
 */
async function withPg<T>(
  o: StoreOpts & { zone?: string },
  fn: (pool: import('pg').Pool, zone: string) => Promise<T>,
): Promise<{ value: T } | undefined> {
  const spec = resolveStore(o)
  if (spec.kind !== 'postgres') return undefined
  const { PgPrimary } = await import('./pg/primary.js')
  const { migrate } = await import('./pg/schema.js')
  // The URL may list a primary and its standbys: the CLI writes to the writable one.
  const pool = new PgPrimary({}, { url: spec.url, config: { connectionTimeoutMillis: 5000 } }).pool({
    max: 1,
  })
  pool.on('error', () => {})
  try {
    const c = await pool.connect()
    let zone: string | undefined
    try {
      zone = await migrate(c, o.zone ? fqdn(o.zone) : undefined)
    } finally {
      c.release()
    }
    if (!zone)
      throw new StoreError(
        'the database holds no zone yet: create the first account with `autotunnel account add USER --store URL --zone ZONE`',
      )
    return { value: await fn(pool, zone) }
  } finally {
    await pool.end()
  }
}

function sqliteDir(o: StoreOpts): string {
  const spec = resolveStore(o)
  if (spec.kind !== 'sqlite') throw new StoreError('not a SQLite store')
  return spec.dir
}

function out(s: string): void {
  process.stdout.write(`${s}\n`)
}

const GROUP_OTHER = 0o077

/**
 * Where a key goes: --output FILE, created (or truncated) with mode 0600 before the store changes, so a path that
 * cannot be written loses no key; else stdout, with a warning when stdout is a file that group or others can read
 * (`account add --json > alice.key.json` under the usual umask 022: issue 13 finding 6).
 */
export class KeyOutput {
  readonly #fd: number | undefined
  readonly #file: string | undefined
  #created = false

  constructor(file: string | undefined) {
    this.#file = file
    if (!file) return
    this.#created = !existsSync(file)
    this.#fd = openSync(file, 'w', 0o600)
    fchmodSync(this.#fd, 0o600)
  }

  write(json: string): void {
    if (this.#fd === undefined) {
      warnIfStdoutOpen()
      out(json)
      return
    }
    writeSync(this.#fd, `${json}\n`)
    closeSync(this.#fd)
    process.stderr.write(`autotunnel: key written to ${this.#file} (mode 0600)\n`)
  }

  /** The store refused the change: no key file is left behind that we made. */
  abandon(): void {
    if (this.#fd === undefined) return
    closeSync(this.#fd)
    if (this.#created && this.#file) rmSync(this.#file, { force: true })
  }
}

function warnIfStdoutOpen(): void {
  try {
    const st = fstatSync(1)
    if (st.isFile() && st.mode & GROUP_OTHER)
      process.stderr.write(
        `autotunnel: warning: the key goes to a file that group or others can read (mode ${(st.mode & 0o777).toString(8)}): ` +
          'chmod 600 it, or use --output FILE (written with mode 0600)\n',
      )
  } catch {
    // stdout closed or not a file: nothing to say
  }
}

async function readPassword(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  const pw = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '')
  if (pw.length === 0) throw new AccountError('empty password on stdin')
  return pw
}

function open(dir: string, zone: string | undefined): { db: Db; zone: string } {
  const z = zone ? fqdn(zone) : storedZone(dir)
  if (!z)
    throw new StoreError(`no store in ${dir}: create one with \`autotunnel account add USER --data DIR --zone ZONE\``)
  return { db: openDb(dir, z), zone: z }
}

function show(a: Account, json: boolean | undefined, dest?: KeyOutput): void {
  const o = {
    user: a.user,
    domain: a.keyName.replace(/\.$/, ''),
    keyName: a.keyName,
    algorithm: a.algorithm,
    secret: a.secret.toString('base64'),
  }
  if (dest) dest.write(JSON.stringify(o))
  else if (json) {
    warnIfStdoutOpen()
    out(JSON.stringify(o))
  } else {
    out(
      `account ${o.user}: domain ${o.domain} key ${o.keyName} ${o.algorithm}${a.derived ? ' (derived from the password)' : ''}`,
    )
    out(`secret ${o.secret}`)
    out(`nsupdate -y ${o.algorithm}:${o.keyName}:${o.secret}`)
  }
}

async function makeKey(
  user: string,
  zone: string,
  o: { passwordStdin?: boolean; algorithm: string },
): Promise<{ algorithm: AccountAlgorithm; secret: Buffer; derived: boolean }> {
  if (!isAccountAlgorithm(o.algorithm)) throw new AccountError(`unknown algorithm ${o.algorithm}`)
  const algorithm = o.algorithm
  if (o.passwordStdin)
    return { algorithm, secret: await deriveTsigKeyAsync(user, zone, await readPassword(), algorithm), derived: true }
  return { algorithm, secret: randomTsigKey(algorithm), derived: false }
}

function checkUser(user: string, creating = false): void {
  if (!isValidUser(user))
    throw new AccountError(`invalid user name ${JSON.stringify(user)}: one lower-case letter/digit/hyphen label`)
  if (creating && RESERVED_USERS.has(user)) throw new AccountError(`user name ${user} is reserved for the server`)
}

export async function accountAdd(
  user: string,
  o: StoreOpts & { zone: string; passwordStdin?: boolean; json?: boolean; algorithm: string; output?: string },
): Promise<void> {
  checkUser(user, true)
  const zone = fqdn(o.zone)
  const key = await makeKey(user, zone, o)
  const dest = o.output ? new KeyOutput(o.output) : undefined
  const { pgAddAccount } = await import('./pg/accounts.js')
  try {
    const done = await withPg(o, async (pool, z) =>
      show(await pgAddAccount(pool, z, { user, ...key, nowMs: Date.now() }), o.json, dest),
    )
    if (done) return
  } catch (e) {
    dest?.abandon()
    throw e
  }
  const db = openDb(sqliteDir(o), zone)
  try {
    show(addAccount(db, zone, { user, ...key, nowMs: Date.now() }), o.json, dest)
  } catch (e) {
    dest?.abandon()
    throw e
  } finally {
    db.close()
  }
}

export async function accountList(o: StoreOpts & { zone?: string; json?: boolean }): Promise<void> {
  const { pgListAccounts } = await import('./pg/accounts.js')
  const pgAll = await withPg(o, (pool) => pgListAccounts(pool))
  const { db } = pgAll ? { db: undefined } : open(sqliteDir(o), o.zone)
  try {
    const all = pgAll ? pgAll.value : listAccounts(db!)
    if (o.json)
      out(
        JSON.stringify(
          all.map((a) => ({
            user: a.user,
            domain: a.keyName.replace(/\.$/, ''),
            keyName: a.keyName,
            algorithm: a.algorithm,
            derived: a.derived,
            created: new Date(a.createdMs).toISOString(),
          })),
        ),
      )
    else
      for (const a of all)
        out(
          `${a.user}\t${a.keyName}\t${a.algorithm}\t${a.derived ? 'password' : 'random'}\t${new Date(a.createdMs).toISOString()}`,
        )
  } finally {
    db?.close()
  }
}

export async function accountRemove(user: string, o: StoreOpts & { zone?: string }): Promise<void> {
  checkUser(user)
  const { pgRemoveAccount } = await import('./pg/accounts.js')
  const done = await withPg(o, async (pool, zone) => {
    const n = await pgRemoveAccount(pool, zone, user)
    out(`removed account ${user} and ${n} record(s) under ${user}.${zone}`)
  })
  if (done) return
  const { db, zone } = open(sqliteDir(o), o.zone)
  try {
    const n = removeAccount(db, zone, user)
    out(`removed account ${user} and ${n} record(s) under ${user}.${zone}`)
  } finally {
    db.close()
  }
}

export async function accountLimit(user: string, o: StoreOpts & { zone?: string; maxRecords?: number }): Promise<void> {
  checkUser(user)
  const say = (a: Account): void =>
    out(
      `account ${user}: ${a.maxRecords === undefined ? 'the server default number of' : `at most ${a.maxRecords}`} records`,
    )
  const { pgSetAccountLimit } = await import('./pg/accounts.js')
  if (await withPg(o, async (pool) => say(await pgSetAccountLimit(pool, user, o.maxRecords, Date.now())))) return
  const { db } = open(sqliteDir(o), o.zone)
  try {
    say(setAccountLimit(db, user, o.maxRecords, Date.now()))
  } finally {
    db.close()
  }
}

export async function accountPasswd(
  user: string,
  o: StoreOpts & { zone?: string; passwordStdin?: boolean; json?: boolean; algorithm: string; output?: string },
): Promise<void> {
  checkUser(user)
  const { pgSetAccountSecret } = await import('./pg/accounts.js')
  let pgDest: KeyOutput | undefined
  try {
    const done = await withPg(o, async (pool, zone) => {
      const key = await makeKey(user, zone, o)
      pgDest = o.output ? new KeyOutput(o.output) : undefined
      show(await pgSetAccountSecret(pool, user, { ...key, nowMs: Date.now() }), o.json, pgDest)
    })
    if (done) return
  } catch (e) {
    pgDest?.abandon()
    throw e
  }
  const { db, zone } = open(sqliteDir(o), o.zone)
  let dest: KeyOutput | undefined
  try {
    const key = await makeKey(user, zone, o)
    dest = o.output ? new KeyOutput(o.output) : undefined
    show(setAccountSecret(db, user, { ...key, nowMs: Date.now() }), o.json, dest)
  } catch (e) {
    dest?.abandon()
    throw e
  } finally {
    db.close()
  }
}

const HOST_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/**
 * `account revoke-host USER HOST`: deletes, in the store, what the agent's `autotunnel revoke` deletes by UPDATE
 * (src/agent/revoke.ts): the host's key record and every other record it published (H.D, _autotunnel._udp.H.D,
 * its SRV target L.D, its host-list PTR, its DNS-SD instances). One transaction bumping the serial and the external
 * generation, as `account remove` does, so a running server reloads its index and notifies LLQ/DNS Push watchers
 * (Store.checkExternal, once a second). Returns the names touched.
 */
export function revokeHostInDb(db: Db, zone: string, user: string, host: string): string[] {
  const h = host.toLowerCase()
  if (!HOST_LABEL.test(h)) throw new AccountError(`invalid host name ${JSON.stringify(host)}: one label`)
  const d = `${user}.${zone}`
  const hostName = `${h}.${d}`
  const srvName = `_autotunnel._udp.${hostName}`
  const fqLower = (t: string): string => (t.endsWith('.') ? t : `${t}.`).toLowerCase()
  const revoke = db.transaction(() => {
    if (!db.prepare('SELECT 1 FROM account WHERE user = ?').get(user)) throw new AccountError(`no account ${user}`)
    const texts = (name: string, type: number): string[] =>
      db.prepare('SELECT text FROM rr WHERE name = ? AND type = ?').pluck().all(name, type) as string[]
    const targets = texts(srvName, 33)
      .map((t) => fqLower(t.split(' ').at(-1) ?? ''))
      .filter((t) => t.endsWith(`.${d}`))
    const types = texts(`_services._dns-sd._udp.${d}`, 12)
      .map(fqLower)
      .filter((t) => t.endsWith(`.${d}`))
    const delName = db.prepare('DELETE FROM rr WHERE name = ?')
    const delPtr = db.prepare('DELETE FROM rr WHERE name = ? AND type = 12 AND lower(text) = ?')
    const touched: string[] = []
    let n = 0
    for (const name of [hostName, srvName, ...targets, ...types.map((t) => `${h}.${t}`)]) {
      const c = delName.run(name).changes
      if (c) touched.push(name)
      n += c
    }
    for (const [list, target] of [[`_autotunnel._udp.${d}`, srvName], ...types.map((t) => [t, `${h}.${t}`])] as [
      string,
      string,
    ][]) {
      const c = delPtr.run(list, target).changes
      if (c) touched.push(`${list} PTR ${target}`)
      n += c
    }
    if (n > 0) setMeta(db, 'serial', String(nextSerial(Number(getMeta(db, 'serial') ?? '1'))))
    setMeta(db, 'external_gen', String(Number(getMeta(db, 'external_gen') ?? '0') + 1))
    return touched
  })
  // IMMEDIATE: the transaction reads before it writes, and SQLite refuses at once (SQLITE_BUSY, no waiting) to turn
  // a read lock into the write lock while the running server holds that; taking the write lock first waits instead.
  return revoke.immediate()
}

export async function accountRevokeHost(user: string, host: string, o: StoreOpts & { zone?: string }): Promise<void> {
  checkUser(user)
  const say = (touched: string[]): void => {
    out(`revoked host ${host.toLowerCase()} of ${user}: ${touched.length ? 'deleted' : 'nothing published'}`)
    for (const t of touched) out(`  ${t}`)
  }
  const undo = '  no more records or SSO certificates from it (undo: autotunnel account unrevoke-host)'
  const { pgRevokeHost } = await import('./pg/accounts.js')
  if (
    await withPg(o, async (pool, zone) => {
      say(await pgRevokeHost(pool, zone, user, host))
      out(undo)
    })
  )
    return
  const dir = sqliteDir(o)
  const { db, zone } = open(dir, o.zone)
  try {
    say(revokeHostInDb(db, zone, user, host))
    // SSO (docs/sso.md): the server issues the host no more certificates.
    setHostRevoked(dir, user, host)
    out(undo)
  } finally {
    db.close()
  }
}

/** `account unrevoke-host USER HOST`: lets a revoked host name enrol for SSO certificates again. */
export async function accountUnrevokeHost(user: string, host: string, o: StoreOpts & { zone?: string }): Promise<void> {
  checkUser(user)
  const h = host.toLowerCase()
  if (!HOST_LABEL.test(h)) throw new AccountError(`invalid host name ${JSON.stringify(host)}: one label`)
  const { pgUnrevokeHost } = await import('./pg/accounts.js')
  const inPg = await withPg(o, (pool) => pgUnrevokeHost(pool, user, h))
  const changed = inPg ? inPg.value : unrevokeInDir(sqliteDir(o), o.zone, user, h)
  out(
    changed
      ? `host ${h} of ${user} may publish its records and enrol for SSO certificates again`
      : `host ${h} of ${user} was not revoked`,
  )
}

function unrevokeInDir(dir: string, zone: string | undefined, user: string, host: string): boolean {
  const { db } = open(dir, zone)
  try {
    if (!db.prepare('SELECT 1 FROM account WHERE user = ?').get(user)) throw new AccountError(`no account ${user}`)
  } finally {
    db.close()
  }
  return setHostRevoked(dir, user, host, false)
}
