// The SQLite file behind the service (better-sqlite3, WAL). One zone per data directory.
//
// Durability: journal_mode=WAL with synchronous=FULL, so a COMMIT returns only after the WAL is fsync'ed and an
// UPDATE is answered only after its COMMIT returned: neither SIGKILL nor a power cut loses an answered update.
// (synchronous=NORMAL would already survive SIGKILL, since committed WAL frames sit in the OS page cache, but not a
// power cut.) The cost is one fsync per transaction, which the update queue amortises by committing every update
// that arrived during the previous commit in one transaction (group commit, update-queue.ts).
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { ensureOwnerOnly, tightenIfPresent } from '../io/secret-file.js'

export type Db = Database.Database
export type SyncMode = 'full' | 'normal'

export const DB_FILE = 'autotunnel.sqlite'
const SCHEMA_VERSION = '2'

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
-- One row per resource record. name (lower case) and rdata (uncompressed canonical wire form) are the key;
-- owner and wire hold the owner name and RDATA as written when their case differs (RFC 4343), else NULL; text
-- is the presentation of the RDATA as written. expires_ms is the update lease (RFC 9664) as a wall-clock time
-- in ms; NULL = permanent.
CREATE TABLE IF NOT EXISTS rr (
  name       TEXT    NOT NULL,
  type       INTEGER NOT NULL,
  class      INTEGER NOT NULL,
  ttl        INTEGER NOT NULL,
  rdata      BLOB    NOT NULL,
  text       TEXT    NOT NULL,
  expires_ms INTEGER,
  owner      TEXT,
  wire       BLOB,
  PRIMARY KEY (name, type, class, rdata)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rr_expiry ON rr (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS account (
  user       TEXT    PRIMARY KEY,
  key_name   TEXT    NOT NULL UNIQUE,
  algorithm  TEXT    NOT NULL,
  secret     BLOB    NOT NULL,
  derived    INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  changed_ms INTEGER NOT NULL
) STRICT;
-- Per-account limits set with \`autotunnel account limit\`; an account without a row has the server's defaults.
CREATE TABLE IF NOT EXISTS account_limit (
  user        TEXT    PRIMARY KEY,
  max_records INTEGER NOT NULL
) STRICT;
`

export class StoreError extends Error {
  override readonly name = 'StoreError'
}

/** How long a statement waits for another connection's lock (`autotunnel account ...` beside the server). */
export const BUSY_TIMEOUT_MS = 5000
const BUSY_RETRY_MS = 10

/**
 * Opens (creating if needed) DIR/autotunnel.sqlite for `zone`. A directory belongs to the zone it was created
 * for; opening it for another zone is an error rather than a silent second zone.
 *
 * Several processes may open a fresh directory at once (the server and `autotunnel account add`): every step waits
 * for the others' locks instead of failing with SQLITE_BUSY (see walMode for the one step SQLite does not wait in).
 */
export function openDb(dir: string, zone: string, opts: { sync?: SyncMode; readonly?: boolean } = {}): Db {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  // The file holds every account's TSIG secret: 0600 whatever the directory (SQLite gives the -wal and -shm
  // files it creates the database file's mode; existing ones are tightened too).
  // -wal and -shm may vanish between a look and a chmod (`autotunnel account ...` closing the last connection).
  ensureOwnerOnly(join(dir, DB_FILE))
  for (const suffix of ['-wal', '-shm']) tightenIfPresent(join(dir, DB_FILE + suffix))
  const db = new Database(join(dir, DB_FILE), { timeout: BUSY_TIMEOUT_MS })
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
    walMode(db)
    db.pragma(`synchronous = ${opts.sync === 'normal' ? 'NORMAL' : 'FULL'}`)
    const put = (key: string, value: string): void => {
      db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run(key, value)
    }
    // IMMEDIATE takes the write lock first (waiting for it), so a second opener never sees half a schema and
    // never has to upgrade a read lock (which SQLite refuses at once instead of waiting).
    db.transaction(() => {
      db.exec(SCHEMA)
      put('schema_version', SCHEMA_VERSION)
      put('zone', zone)
      put('serial', '1')
      put('external_gen', '0')
    }).immediate()
    migrate(db)
    const stored = getMeta(db, 'zone')
    if (stored !== zone) throw new StoreError(`data directory ${dir} holds zone ${stored}, not ${zone}`)
    return db
  } catch (e) {
    db.close()
    throw e
  }
}

/**
 * `PRAGMA journal_mode = WAL`, waiting for other connections. On a new (rollback-journal) file the switch reads
 * the header under a shared lock and then upgrades to a write lock; when another connection holds that (its own
 * switch, or its schema creation) SQLite answers SQLITE_BUSY at once without calling the busy handler, since
 * waiting while holding a read lock could deadlock. The pragma released its read lock on failing, so retrying is
 * safe; this was `autotunnel: database is locked` at server start beside `account add` (issue 14).
 */
function walMode(db: Db): void {
  const deadline = Date.now() + BUSY_TIMEOUT_MS
  for (;;) {
    try {
      db.pragma('journal_mode = WAL')
      return
    } catch (e) {
      if ((e as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() >= deadline) throw e
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, BUSY_RETRY_MS)
    }
  }
}

/** Schema 1 -> 2: the owner and wire columns (case-preserved names); old rows keep NULL (lower case as stored). */
function migrate(db: Db): void {
  const cols = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('rr')").all()
  if (cols.some((c) => c.name === 'owner')) return
  db.transaction(() => {
    if (
      db
        .prepare<[], { name: string }>("SELECT name FROM pragma_table_info('rr')")
        .all()
        .some((c) => c.name === 'owner')
    )
      return
    db.exec('ALTER TABLE rr ADD COLUMN owner TEXT')
    db.exec('ALTER TABLE rr ADD COLUMN wire BLOB')
    db.prepare("UPDATE meta SET value = ? WHERE key = 'schema_version'").run(SCHEMA_VERSION)
  }).immediate()
}

export function getMeta(db: Db, key: string): string | undefined {
  return db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(key)?.value
}

export function setMeta(db: Db, key: string, value: string): void {
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(
    key,
    value,
  )
}

/** Serial arithmetic (RFC 1982): the next serial after `s`, skipping 0 as BIND does. */
export function nextSerial(s: number): number {
  const n = (s + 1) >>> 0
  return n === 0 ? 1 : n
}

/** The zone DIR was created for, or undefined when DIR holds no store yet. */
export function storedZone(dir: string): string | undefined {
  const file = join(dir, DB_FILE)
  if (!existsSync(file)) return undefined
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    db.pragma('busy_timeout = 5000')
    return getMeta(db, 'zone')
  } finally {
    db.close()
  }
}
