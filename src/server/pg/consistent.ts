// The transaction of a write whose outcome depends on other nodes' data (RFC 2136 prerequisites, a quota near its
// limit: update.ts consistentReadOf), on the PostgreSQL store (store.ts; docs/cluster.md, Consistency):
//
//   BEGIN; SELECT pg_advisory_xact_lock(ACCOUNT_LOCK, hashtext(domain)) ...   -- every account, in one order
//                                                                               (the batch's others: shared)
//   [SELECT DISTINCT name FROM change WHERE (xid, id) > cursor AND name at or below a domain]  -- near the quota
//   SELECT ... FROM rr WHERE name = ANY(names)                                  -- after the lock: a new snapshot
//   (the node applies these rows to its index, then runs the batch's jobs against it)
//   <COMMIT_SQL>; COMMIT                                                        -- the lock goes with the COMMIT
//
// Two such writes for one account on any nodes are serialised by the lock, and the second one's read, a statement
// that starts after the first's COMMIT (READ COMMITTED takes a snapshot per statement), sees the first's rows: its
// prerequisites are evaluated against them, so of two conflicting UPDATEs at most one succeeds. The read also sees
// whatever any node committed before it started: an UPDATE acknowledged anywhere before this one arrived.
// Writes without such a dependency (no prerequisites, far from the quota) stay one statement, which takes their
// accounts' locks shared before it writes a row (sql.ts, WRITE_CTES): it waits for a write of this kind in flight
// for one of its accounts (its prerequisites were read without it, so it commits after them), and such a write
// waits for it (and then reads its rows); writes without prerequisites do not wait for each other.
import type pg from 'pg'
import type { LeaseTable } from '../lease-table.js'
import { isAtOrBelow, type Rec, type ZoneIndex } from '../zone-index.js'
import type { ConsistentRead, RRsetChange } from '../zone-tx.js'
import { applyRows } from './reconcile.js'
import { SCHEMA } from './schema.js'
import { ACCOUNT_LOCK, COLUMNS, type Row } from './sql.js'

/**
 * The accounts' locks, in hash order (two transactions locking the same accounts cannot wait for each other, and
 * none takes an advisory lock after a row lock): $1 exclusively, $2 (the rest) shared. A key in both is taken
 * exclusively (bool_or: one of its accounts is in $1).
 */
export const LOCK_SQL = `
SELECT CASE WHEN x THEN pg_advisory_xact_lock(${ACCOUNT_LOCK}, h) ELSE pg_advisory_xact_lock_shared(${ACCOUNT_LOCK}, h) END
FROM (SELECT hashtext(d) AS h, bool_or(x) AS x
      FROM (SELECT d, true AS x FROM unnest($1::text[]) AS d UNION ALL SELECT d, false FROM unnest($2::text[]) AS d) a
      GROUP BY 1 ORDER BY 1) AS k`

/** The current rows of the names (every type): an index range scan on the primary key per name. */
const READ_NAMES_SQL = `SELECT ${COLUMNS} FROM ${SCHEMA}.rr WHERE name = ANY($1::text[])`

/**
 * The names at or below the domains (whose quota counts their records) that the change feed names after the node's
 * cursor ($1, $2): committed in this statement's snapshot but not yet applied to the node's index, which holds every
 * change up to its cursor. An index range scan of the feed since the cursor (a few ms of changes).
 */
const CHANGED_SQL = `
SELECT DISTINCT c.name FROM ${SCHEMA}.change c
WHERE (c.xid, c.id) > ($1::xid8, $2::bigint) AND c.kind <> 'account'
  AND EXISTS (SELECT 1 FROM unnest($3::text[]) AS d WHERE c.name = d OR right(c.name, length(d) + 1) = '.' || d)`

/**
 * Every row at or below the domains: a sequential scan of rr (33 ms with 100,000 records), only when the node's
 * index cannot be trusted up to its cursor (a commit with an unknown outcome, a feed not read for long).
 */
const READ_DOMAINS_SQL = `
SELECT ${COLUMNS} FROM ${SCHEMA}.rr r
WHERE r.name = ANY($1::text[])
   OR EXISTS (SELECT 1 FROM unnest($2::text[]) AS d WHERE r.name = d OR right(r.name, length(d) + 1) = '.' || d)`

/** Where the node's index stands: every change up to `cursor` is in it, unless `trusted` is false. */
export interface IndexPosition {
  readonly cursor: { readonly xid: string; readonly id: string }
  readonly trusted: boolean
  /** RRsets whose re-read is still due (a feed read raced a commit of the node): not in the index yet. */
  readonly pending: Iterable<readonly [string, number]>
}

/**
 * Begins the transaction on a connection of `pool`, takes the accounts' locks (those of `reads` exclusively, the
 * other `accounts` the batch writes shared: its commit statement then takes no lock it does not hold yet), reads
 * the rows `reads` depend on and makes `index` and `leases` hold them; returns the RRsets re-read and the
 * differences (for the watchers). The caller commits (or ends) the transaction on the returned client and releases
 * it; on failure here the connection is discarded and nothing was written.
 */
export async function lockAndRead(
  pool: pg.Pool,
  index: ZoneIndex,
  leases: LeaseTable<Rec>,
  reads: readonly ConsistentRead[],
  accounts: readonly string[],
  at: IndexPosition,
): Promise<{ client: pg.PoolClient; keys: [string, number][]; changes: RRsetChange[]; rrsets: number }> {
  const names = new Set<string>()
  const domains = new Set<string>()
  const whole = new Set<string>()
  for (const r of reads) {
    domains.add(r.domain)
    if (r.wholeAccount) whole.add(r.domain)
    for (const n of r.names) names.add(n)
  }
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await client.query({ name: 'autotunnel_lock', text: LOCK_SQL, values: [[...domains], accounts] })
    let rows: Row[]
    let scanned: string[] = []
    if (whole.size && !at.trusted) {
      rows = (
        await client.query<Row>({
          name: 'autotunnel_read_domains',
          text: READ_DOMAINS_SQL,
          values: [[...names], [...whole]],
        })
      ).rows
      scanned = [...whole]
    } else {
      if (whole.size) {
        // The account's records the index lacks: those the feed names after the cursor, and re-reads still due.
        const changed = await client.query<{ name: string }>({
          name: 'autotunnel_changed',
          text: CHANGED_SQL,
          values: [at.cursor.xid, at.cursor.id, [...whole]],
        })
        for (const r of changed.rows) names.add(r.name)
        for (const [n] of at.pending) if ([...whole].some((d) => isAtOrBelow(n, d))) names.add(n)
      }
      rows = (await client.query<Row>({ name: 'autotunnel_read_names', text: READ_NAMES_SQL, values: [[...names]] }))
        .rows
    }
    const keys = readKeys(index, [...names], scanned, rows)
    return { client, keys, ...applyRows(index, leases, keys, rows) }
  } catch (e) {
    // Discarded rather than rolled back: the connection may be the reason (the database went away).
    client.release(true)
    throw e
  }
}

/**
 * The RRsets the rows of lockAndRead replace in the index: every RRset of the names read and, for a domain read
 * whole, every RRset at or below it, whether the index or the database holds it (one the database no longer holds
 * is emptied).
 */
export function readKeys(
  index: ZoneIndex,
  names: readonly string[],
  domains: readonly string[],
  rows: readonly Row[],
): [string, number][] {
  const keys = new Map<string, [string, number]>()
  const add = (name: string, type: number): void => {
    keys.set(`${name}\u0000${type}`, [name, type])
  }
  for (const n of names) {
    const node = index.node(n)
    if (node) for (const t of node.rrsets.keys()) add(n, t)
  }
  if (domains.length)
    for (const [name, node] of index.nodes)
      if (node.rrsets.size && domains.some((d) => isAtOrBelow(name, d)))
        for (const t of node.rrsets.keys()) add(name, t)
  for (const r of rows) add(r.name, r.type)
  return [...keys.values()]
}
