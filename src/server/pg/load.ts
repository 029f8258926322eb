// A node's start on the PostgreSQL store (store.ts): the schema migrated, then the whole zone, the accounts, the
// database's clock and the feed position read in one REPEATABLE READ snapshot, so the feed can be followed from
// exactly where the snapshot ends.
import type pg from 'pg'
import type { Clock } from '../../io/clock.js'
import type { Account } from '../accounts.js'
import type { LeaseTable } from '../lease-table.js'
import type { Rec, ZoneIndex } from '../zone-index.js'
import { pgListAccounts } from './accounts.js'
import { migrate, SCHEMA } from './schema.js'
import { COLUMNS, type Row, rowToZoneRR } from './sql.js'
import { pgListRevoked } from './sso.js'

export interface Loaded {
  /** pg_snapshot_xmin of the snapshot: every transaction below it is in the rows; the feed is read from it. */
  readonly xmin: string
  /** The database's clock minus this node's (ms). */
  readonly offsetMs: number
  readonly accounts: Account[]
  /** Each account's revoked hosts (pg/sso.ts). */
  readonly revoked: Map<string, Set<string>>
  /** The greatest change id handed out (the serial's start). */
  readonly lastId: bigint
}

/** Migrates the schema for `zone`, then fills `index` and `leases` with the zone from one snapshot. */
export async function loadZone(
  c: pg.ClientBase,
  zone: string,
  clock: Clock,
  index: ZoneIndex,
  leases: LeaseTable<Rec>,
): Promise<Loaded> {
  await migrate(c, zone)
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
  const t0 = clock.now()
  const snap = (
    await c.query<{ xmin: string; now_ms: string }>(
      `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
              (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS now_ms`,
    )
  ).rows[0]!
  const offsetMs = Number(snap.now_ms) - (t0 + clock.now()) / 2
  const rows = (await c.query<Row>(`SELECT ${COLUMNS} FROM ${SCHEMA}.rr`)).rows
  const accounts = await pgListAccounts(c)
  const revoked = await pgListRevoked(c)
  // The sequence too: feed rows are pruned, and the serial must not go back when the table is empty.
  const last = (
    await c.query<{ id: string }>(
      `SELECT greatest((SELECT coalesce(max(id), 0) FROM ${SCHEMA}.change),
         (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${SCHEMA}.change_id_seq))::text AS id`,
    )
  ).rows[0]!.id
  await c.query('COMMIT')
  for (const r of rows) {
    const rec: Rec = { rr: rowToZoneRR(r), expiresAtMs: r.expires_ms === null ? null : Number(r.expires_ms) }
    index.insert(rec)
    if (rec.expiresAtMs !== null) leases.set(rec, rec.expiresAtMs)
  }
  return { xmin: snap.xmin, offsetMs, accounts, revoked, lastId: BigInt(last) }
}
