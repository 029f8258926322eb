// The PostgreSQL schema of the shared store (docs/cluster.md), created and migrated by the server and by
// `autotunnel account ... --store postgres://...` themselves: numbered migrations, each applied once in a
// transaction under an advisory lock (so nodes starting together do not race), recorded in
// autotunnel.schema_migrations. A database migrated by a newer autotunnel is refused: this binary does not know
// what the newer columns mean.
import type pg from 'pg'
import { StoreError } from '../db.js'

export const SCHEMA = 'autotunnel'
/** pg_advisory_xact_lock key for migrations ("auto" in ASCII). */
const MIGRATION_LOCK = 0x6175746f

interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'zone records, accounts, change feed, node heartbeats',
    sql: `
-- Settings of the database: zone (one zone per database, as one zone per SQLite directory).
CREATE TABLE autotunnel.meta (key text PRIMARY KEY, value text NOT NULL);
-- One row per resource record, as in the SQLite store (db.ts): name (lower case) and rdata (canonical wire
-- form) are the key, expires_ms the update lease as a time of the database's clock in ms since 1970.
CREATE TABLE autotunnel.rr (
  name       text    NOT NULL,
  type       integer NOT NULL,
  class      integer NOT NULL,
  ttl        bigint  NOT NULL,
  rdata      bytea   NOT NULL,
  text       text    NOT NULL,
  expires_ms bigint,
  owner      text,
  wire       bytea,
  PRIMARY KEY (name, type, class, rdata)
);
CREATE INDEX rr_expiry ON autotunnel.rr (expires_ms) WHERE expires_ms IS NOT NULL;
CREATE TABLE autotunnel.account (
  username   text    PRIMARY KEY,
  key_name   text    NOT NULL UNIQUE,
  algorithm  text    NOT NULL,
  secret     bytea   NOT NULL,
  derived    boolean NOT NULL,
  created_ms bigint  NOT NULL,
  changed_ms bigint  NOT NULL
);
CREATE TABLE autotunnel.account_limit (
  username    text    PRIMARY KEY REFERENCES autotunnel.account ON DELETE CASCADE,
  max_records integer NOT NULL
);
-- The change feed: one row per RRset (kind 'rr', or 'expire' for a lease expiry) or account-table change,
-- written in the transaction that made the change. Readers follow it by (xid, id) and only below
-- pg_snapshot_xmin(pg_current_snapshot()), so a transaction that commits after a later one is never skipped
-- (ids and xids are handed out before commit, in a different order). node is the writer, '' when every node
-- (the writer too) must re-read the RRset.
CREATE TABLE autotunnel.change (
  id   bigserial PRIMARY KEY,
  xid  xid8      NOT NULL DEFAULT pg_current_xact_id(),
  node text      NOT NULL,
  kind text      NOT NULL,
  name text      NOT NULL DEFAULT '',
  type integer   NOT NULL DEFAULT 0,
  at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX change_cursor ON autotunnel.change (xid, id);
-- Live nodes (heartbeats): what the SRV records the server synthesizes could list.
CREATE TABLE autotunnel.node (
  id      text        PRIMARY KEY,
  started timestamptz NOT NULL DEFAULT clock_timestamp(),
  seen    timestamptz NOT NULL DEFAULT clock_timestamp(),
  info    jsonb       NOT NULL DEFAULT '{}'
);
`,
  },
  {
    version: 2,
    name: 'SSO state shared by the nodes: account CAs, revoked hosts, issued certificates',
    sql: `
-- SSO (docs/sso.md, pg/sso.ts). Each account's CA, made by the first node that needs it (INSERT ... ON CONFLICT DO
-- NOTHING, then every node reads the one that won); its key sits beside the TSIG secrets of autotunnel.account and
-- is as secret. An account removed takes its SSO state with it.
CREATE TABLE autotunnel.sso_ca (
  username   text   PRIMARY KEY REFERENCES autotunnel.account ON DELETE CASCADE,
  cert_pem   text   NOT NULL,
  key_pem    text   NOT NULL,
  created_ms bigint NOT NULL
);
-- Hosts that get no certificates and whose records the UPDATE path refuses (revoked-hosts.ts). A change writes an
-- 'account' row to the feed, so every node re-reads the list with the accounts.
CREATE TABLE autotunnel.revoked_host (
  username   text   NOT NULL REFERENCES autotunnel.account ON DELETE CASCADE,
  host       text   NOT NULL,
  revoked_ms bigint NOT NULL,
  PRIMARY KEY (username, host)
);
-- The certificates issued to each host (what an ATCERT query returns), so that an agent may enrol through one node
-- and fetch them through another.
CREATE TABLE autotunnel.sso_cert (
  username  text    NOT NULL REFERENCES autotunnel.account ON DELETE CASCADE,
  host      text    NOT NULL,
  kind      integer NOT NULL,
  der       bytea   NOT NULL,
  issued_ms bigint  NOT NULL,
  PRIMARY KEY (username, host, kind)
);
`,
  },
]

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version

/**
 * Creates or migrates the schema and checks the zone: a new database takes `zone` (when given); an existing one
 * must hold the same. Returns the database's zone (undefined only when the database is new and no zone was given).
 */
export async function migrate(client: pg.ClientBase, zone: string | undefined): Promise<string | undefined> {
  await client.query('BEGIN')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`)
    await client.query(`CREATE TABLE IF NOT EXISTS ${SCHEMA}.schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`)
    const cur = Number(
      (await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${SCHEMA}.schema_migrations`)).rows[0]
        ?.v ?? 0,
    )
    if (cur > SCHEMA_VERSION)
      throw new StoreError(
        `the database's autotunnel schema is version ${cur}, newer than this autotunnel knows (${SCHEMA_VERSION}): ` +
          'a newer autotunnel migrated it; run that version on this node too (older nodes cannot share it)',
      )
    for (const m of MIGRATIONS) {
      if (m.version <= cur) continue
      await client.query(m.sql)
      await client.query(`INSERT INTO ${SCHEMA}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name])
    }
    if (zone !== undefined)
      await client.query(`INSERT INTO ${SCHEMA}.meta (key, value) VALUES ('zone', $1) ON CONFLICT (key) DO NOTHING`, [
        zone,
      ])
    const stored = (await client.query<{ value: string }>(`SELECT value FROM ${SCHEMA}.meta WHERE key = 'zone'`))
      .rows[0]?.value
    if (zone !== undefined && stored !== zone)
      throw new StoreError(`the database holds zone ${stored}, not ${zone}: one zone per database`)
    await client.query('COMMIT')
    return stored
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {})
    throw e
  }
}

/** Serial arithmetic on the change feed: the zone serial is the last change id seen, modulo 2^32 and never 0. */
export function serialFromChangeId(id: bigint): number {
  const s = Number(id % 0x1_0000_0000n)
  return s === 0 ? 1 : s
}
