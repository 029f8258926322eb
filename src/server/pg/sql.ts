// The statements of the PostgreSQL store (store.ts) and the row shapes they return.
import { RRType } from '../../dns/wire/rr-table.js'
import { rdataKey, type ZoneRR } from '../zone-index.js'
import type { SqlOp } from '../zone-tx.js'
import { SCHEMA } from './schema.js'

/** A clear of every RRset of a name. */
const ANY_TYPE = RRType.ANY

/** Feed rows read per query. */
export const FEED_PAGE = 5000
/** Expired records deleted per sweep statement. */
export const SWEEP_BATCH = 1000

export interface Row {
  name: string
  type: number
  class: number
  ttl: string
  rdata: Buffer
  text: string
  expires_ms: string | null
  owner: string | null
  wire: Buffer | null
}

export const COLUMNS = 'name, type, class, ttl, rdata, text, expires_ms, owner, wire'

/**
 * First key of the two-key advisory locks of accounts ("acct"), the second hashtext(domain); the migration lock is
 * a one-key lock, a separate key space (PostgreSQL documents that the two do not overlap). A write whose outcome
 * depends on other nodes' data holds its accounts' locks exclusively (consistent.ts); every other write holds the
 * accounts it changes shared (WRITE_CTES), so it waits for such a write in flight but not for other writes. A
 * write locks at most MAX_BATCH_ACCOUNTS accounts (update-queue.ts).
 */
export const ACCOUNT_LOCK = 0x61636374

/**
 * The data-modifying part of a write (see the file comment): $1-$16, the change rows' ids in `c`; $21 the accounts
 * (domains) whose records it changes; $22, $23 the RRsets to clear (name, type; type 255 (ANY): every RRset of the
 * name): `ds` deletes whatever rows the database holds of them (ZoneTx.clear: also those another node committed
 * that this node's index lacks), except the rows `d` deletes and `p` writes (operations after the clear; a
 * statement may not touch a row twice), and `c` adds a change row for each RRset it deleted from (other nodes
 * re-read them).
 *
 * `lk` first takes those accounts' locks shared, without waiting (pg_try_advisory_xact_lock_shared): it fails while
 * a write with prerequisites (or near its quota) of one of them holds the lock exclusively (consistent.ts), or
 * waits for it. `d`, `p` and `c` then modify rows only if every lock was taken: the order of a statement's CTEs is
 * otherwise unspecified, but each of them filters its rows on `lk`'s one aggregate row, which exists only once every
 * key has been tried, so no row of rr or change is written or row-locked before the locks are held (a row lock
 * taken before an advisory lock could deadlock with a consistent writer, which takes its advisory locks first), and
 * none at all if one was missing: the statement then reports locked = false, and the store runs the write again in
 * a transaction that waits for the locks first (store.ts), so that its statement's snapshot follows the COMMIT of
 * the write it waited for (this one's was taken when it started, possibly before that COMMIT). A transaction that
 * holds its locks already passes none (store.ts, #commit).
 */
const WRITE_CTES = `
lk AS MATERIALIZED (
  SELECT coalesce(bool_and(pg_try_advisory_xact_lock_shared(${ACCOUNT_LOCK}, h)), true) AS ok
  FROM (SELECT DISTINCT hashtext(a) AS h FROM unnest($21::text[]) AS a) AS k),
d AS (
  DELETE FROM ${SCHEMA}.rr r USING unnest($1::text[], $2::int[], $3::int[], $4::bytea[]) AS x(name, type, class, rdata)
  WHERE r.name = x.name AND r.type = x.type AND r.class = x.class AND r.rdata = x.rdata AND (SELECT ok FROM lk)),
p AS (
  INSERT INTO ${SCHEMA}.rr (${COLUMNS})
  SELECT * FROM unnest($5::text[], $6::int[], $7::int[], $8::bigint[], $9::bytea[], $10::text[], $11::bigint[],
                       $12::text[], $13::bytea[])
  WHERE (SELECT ok FROM lk)
  ON CONFLICT (name, type, class, rdata) DO UPDATE SET ttl = excluded.ttl, text = excluded.text,
    expires_ms = excluded.expires_ms, owner = excluded.owner, wire = excluded.wire),
ds AS (
  DELETE FROM ${SCHEMA}.rr r USING unnest($22::text[], $23::int[]) AS s(name, type)
  WHERE r.name = s.name AND (s.type = 255 OR r.type = s.type) AND (SELECT ok FROM lk)
    AND NOT EXISTS (
      SELECT 1 FROM unnest($1::text[], $2::int[], $3::int[], $4::bytea[]) AS x(name, type, class, rdata)
      WHERE x.name = r.name AND x.type = r.type AND x.class = r.class AND x.rdata = r.rdata)
    AND NOT EXISTS (
      SELECT 1 FROM unnest($5::text[], $6::int[], $7::int[], $9::bytea[]) AS x(name, type, class, rdata)
      WHERE x.name = r.name AND x.type = r.type AND x.class = r.class AND x.rdata = r.rdata)
  RETURNING r.name, r.type),
c AS (
  INSERT INTO ${SCHEMA}.change (node, kind, name, type)
  SELECT $14, 'rr', * FROM (SELECT * FROM unnest($15::text[], $16::int[]) UNION SELECT name, type FROM ds) AS t
  WHERE (SELECT ok FROM lk)
  RETURNING id)`

/**
 * One feed read (parameters: cursor xid and id, this node, the RRsets asked again as names and types; `last` the
 * summary's extra first column): the page of feed rows after the cursor below the oldest running transaction comes
 * back as ONE summary row (its size, last (xid, id), greatest id, whether it names an account change), followed by
 * the current rows of every RRset it names that another node changed or that the caller asks again: one row per
 * record, or one row with NULL record columns for an RRset that is now empty. The feed rows themselves are not
 * sent: a node needs only the RRsets and the cursor, and under load a third of the page (with three nodes) is its
 * own writes.
 */
function feedSql(
  xid: string,
  id: string,
  node: string,
  names: string,
  types: string,
  last: string,
  locked: string,
): string {
  return `f AS MATERIALIZED (
  SELECT id, xid, node, kind, name, type FROM ${SCHEMA}.change
  WHERE (xid, id) > (${xid}::xid8, ${id}::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY xid, id LIMIT ${FEED_PAGE}),
k AS (
  SELECT name, type FROM f WHERE kind <> 'account' AND node <> ${node}
  UNION SELECT * FROM unnest(${names}::text[], ${types}::int[])),
l AS (SELECT xid, id FROM f ORDER BY xid DESC, id DESC LIMIT 1)
SELECT ${last} AS last, ${locked} AS locked, (SELECT count(*) FROM f)::int AS n, (SELECT xid FROM l)::text AS last_xid,
       (SELECT id FROM l)::text AS last_id, (SELECT max(id) FROM f)::text AS max_id,
       EXISTS (SELECT 1 FROM f WHERE kind = 'account') AS accounts,
       NULL::text AS name, NULL::int AS type, NULL::int AS class, NULL::bigint AS ttl, NULL::bytea AS rdata,
       NULL::text AS text, NULL::bigint AS expires_ms, NULL::text AS owner, NULL::bytea AS wire
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, k.name, k.type, r.class, r.ttl, r.rdata, r.text, r.expires_ms, r.owner,
       r.wire
FROM k LEFT JOIN LATERAL (
  SELECT class, ttl, rdata, text, expires_ms, owner, wire FROM ${SCHEMA}.rr WHERE rr.name = k.name AND rr.type = k.type
  OFFSET 0) r ON true`
}

/** A feed read on its own: $1, $2 the cursor, $3 this node, $4, $5 the RRsets asked again. */
export const FEED_SQL = `WITH ${feedSql('$1', '$2', '$3', '$4', '$5', 'NULL::text', 'NULL::boolean')}`

/**
 * A write and a feed read in one statement (one round trip, one snapshot): COMMIT_SQL's parameters, then $17, $18
 * the cursor, $19, $20 the RRsets asked again, $21 the accounts to lock (WRITE_CTES; `locked` false: nothing
 * was written) and $22, $23 the RRsets to clear. The read sees the snapshot the statement started with (not this
 * write's rows), so the RRsets this write touched are re-read at the next read (store.ts). Under load a node
 * commits every few milliseconds, and its commits then bring it the other nodes' changes without a read of its own.
 */
export const COMMIT_FEED_SQL = `WITH ${WRITE_CTES},
${feedSql('$17', '$18', '$14', '$19', '$20', '(SELECT max(id) FROM c)::text', '(SELECT ok FROM lk)')}`

/**
 * A row of FEED_SQL and COMMIT_FEED_SQL: the summary (n set: the page's feed rows; last_xid/last_id/max_id NULL when
 * n is 0; `last` the write's last change id) or an RRset's row (class NULL: the RRset is empty).
 */
export type FeedReadRow = Omit<Row, 'class'> & {
  last: string | null
  locked: boolean | null
  n: number | null
  last_xid: string | null
  last_id: string | null
  max_id: string | null
  accounts: boolean | null
  class: number | null
}

/** A feed read, sent at `sentAt` from `cursor` when this node had made `start` commits, asking `asked` again. */
export interface FeedRead {
  readonly start: number
  readonly cursor: { xid: string; id: string }
  /** The store's count of applied reads when this one was sent. */
  readonly applied: number
  readonly asked: readonly [string, [string, number]][]
  readonly sentAt: number
  readonly page: FeedPage
}

/** A feed read's result: its summary, the RRsets to re-read (keys) and their rows. */
export interface FeedPage {
  /** Feed rows in the page, the cursor after it (none if empty) and its greatest id. */
  readonly n: number
  readonly cursor: { xid: string; id: string } | undefined
  readonly maxId: bigint
  readonly accounts: boolean
  readonly keys: Map<string, [string, number]>
  readonly records: Row[]
  /** The last change id of the write it was read with (COMMIT_FEED_SQL). */
  readonly last: bigint | undefined
  /** COMMIT_FEED_SQL: false when an account's lock was held exclusively elsewhere (nothing was written). */
  readonly locked: boolean | undefined
}

export function parseFeedPage(rows: readonly FeedReadRow[], lastId: bigint): FeedPage {
  const keys = new Map<string, [string, number]>()
  const records: Row[] = []
  let n = 0
  let cursor: { xid: string; id: string } | undefined
  let maxId = lastId
  let accounts = false
  let last: bigint | undefined
  let locked: boolean | undefined
  for (const r of rows) {
    if (r.n !== null) {
      n = r.n
      if (r.last_xid !== null && r.last_id !== null) cursor = { xid: r.last_xid, id: r.last_id }
      if (r.max_id !== null && BigInt(r.max_id) > maxId) maxId = BigInt(r.max_id)
      accounts = r.accounts === true
      if (r.last !== null) last = BigInt(r.last)
      if (r.locked !== null) locked = r.locked
      continue
    }
    keys.set(`${r.name}\u0000${r.type}`, [r.name, r.type])
    if (r.class !== null) records.push(r as Row)
  }
  return { n, cursor, maxId, accounts, keys, records, last, locked }
}

/** Expired leases, a batch at a time, by the database's clock; rows another node is deleting are skipped. */
export const SWEEP_SQL = `
WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
due AS (
  SELECT r.name, r.type, r.class, r.rdata FROM ${SCHEMA}.rr r WHERE r.expires_ms <= (SELECT ms FROM now)
  ORDER BY r.expires_ms LIMIT ${SWEEP_BATCH} FOR UPDATE OF r SKIP LOCKED),
del AS (
  DELETE FROM ${SCHEMA}.rr r USING due
  WHERE r.name = due.name AND r.type = due.type AND r.class = due.class AND r.rdata = due.rdata
  RETURNING r.name, r.type),
ch AS (INSERT INTO ${SCHEMA}.change (node, kind, name, type) SELECT DISTINCT '', 'expire', name, type FROM del)
SELECT (SELECT count(*) FROM del)::int AS n, (SELECT ms FROM now)::text AS now_ms`

/**
 * The parameters of COMMIT_SQL for a write's operations ($1-$16; `clears` are $22, $23): the last operation per row
 * wins (a statement may not touch a row twice), deletions and upserts as column arrays, and one change row per
 * RRset touched. A clear supersedes the operations before it on its rows (they are deleted whatever they were);
 * `touched` names its RRset (type ANY: `clearedNames` names the name instead).
 */
export function commitParamsOf(
  ops: readonly SqlOp[],
  nodeId: string,
): {
  params: unknown[]
  touched: [string, number][]
  clears: [string[], number[]]
  clearedNames: string[]
  /** The write deletes rows (a record, an RRset or a name): its statement must not start before its locks. */
  deletes: boolean
} {
  type RowOp = Extract<SqlOp, { rr: unknown }>
  const last = new Map<string, RowOp>()
  /** The keys in `last` per name (a clear drops those of its RRset). */
  const byName = new Map<string, Set<string>>()
  const clears = new Map<string, [string, number]>()
  for (const op of ops) {
    if (op.kind === 'clear') {
      const keys = byName.get(op.name)
      if (keys)
        for (const k of keys)
          if (op.type === ANY_TYPE || last.get(k)?.rr.type === op.type) {
            last.delete(k)
            keys.delete(k)
          }
      if (op.type === ANY_TYPE) for (const [k, c] of clears) if (c[0] === op.name) clears.delete(k)
      if (!clears.has(`${op.name}\u0000${ANY_TYPE}`)) clears.set(`${op.name}\u0000${op.type}`, [op.name, op.type])
      continue
    }
    const k = `${op.rr.name}\u0000${op.rr.type}\u0000${op.rr.class}\u0000${rdataKey(op.rr.rdata)}`
    last.delete(k)
    last.set(k, op)
    let keys = byName.get(op.rr.name)
    if (!keys) byName.set(op.rr.name, (keys = new Set()))
    keys.add(k)
  }
  const del: [string[], number[], number[], Buffer[]] = [[], [], [], []]
  const put: [string[], number[], number[], number[], Buffer[], string[], (number | null)[], (string | null)[]] = [
    [],
    [],
    [],
    [],
    [],
    [],
    [],
    [],
  ]
  const putWire: (Buffer | null)[] = []
  const touched = new Map<string, [string, number]>()
  const clearedNames: string[] = []
  for (const [k, c] of clears)
    if (c[1] === ANY_TYPE) clearedNames.push(c[0])
    else touched.set(k, c)
  for (const op of last.values()) {
    const rr = op.rr
    touched.set(`${rr.name}\u0000${rr.type}`, [rr.name, rr.type])
    if (op.kind === 'del') {
      del[0].push(rr.name)
      del[1].push(rr.type)
      del[2].push(rr.class)
      del[3].push(rr.rdata)
    } else {
      put[0].push(rr.name)
      put[1].push(rr.type)
      put[2].push(rr.class)
      put[3].push(rr.ttl)
      put[4].push(rr.rdata)
      put[5].push(rr.text)
      put[6].push(op.expiresAtMs === null ? null : Math.round(op.expiresAtMs))
      put[7].push(rr.owner ?? null)
      putWire.push(rr.wire ?? null)
    }
  }
  const names = [...touched.values()]
  return {
    params: [...del, ...put, putWire, nodeId, names.map((n) => n[0]), names.map((n) => n[1])],
    touched: names,
    clears: [[...clears.values()].map((c) => c[0]), [...clears.values()].map((c) => c[1])],
    clearedNames,
    deletes: del[0].length > 0 || clears.size > 0,
  }
}

export function rowToZoneRR(r: Row): ZoneRR {
  const rr: ZoneRR = { name: r.name, type: r.type, class: r.class, ttl: Number(r.ttl), rdata: r.rdata, text: r.text }
  if (r.owner === null && r.wire === null) return rr
  return { ...rr, ...(r.owner !== null ? { owner: r.owner } : {}), ...(r.wire !== null ? { wire: r.wire } : {}) }
}

/**
 * Feed pruning ($1: the retention in seconds): deletes the longest run of rows, in the feed's (xid, id) order,
 * that are all older than the retention. It walks the feed's own index (change_cursor) from the start and stops at
 * the first row inside the retention, so it reads what it deletes plus one row; `DELETE ... WHERE at < ...` read
 * the whole table every minute on every node (137-163 ms at 400,000 rows), and an index on `at` would cost every
 * update one more index entry per feed row. A row that is older but behind a newer one waits for a later prune;
 * no row inside the retention is ever deleted (the first such row is the edge). No row inside the retention at
 * all: the sentinel (the largest xid8 and id) makes the whole table the run.
 */
export const PRUNE_SQL = `
DELETE FROM ${SCHEMA}.change
WHERE (xid, id) < (
  SELECT xid, id FROM (
    (SELECT xid, id FROM ${SCHEMA}.change
     WHERE at >= clock_timestamp() - make_interval(secs => $1)
     ORDER BY xid, id LIMIT 1)
    UNION ALL
    SELECT '18446744073709551615'::xid8, 9223372036854775807::bigint
  ) edge
  ORDER BY xid, id LIMIT 1
)`
