// The statements of the PostgreSQL store (store.ts) and the row shapes they return.
import { rdataKey, type ZoneRR } from '../zone-index.js'
import type { SqlOp } from '../zone-tx.js'
import { SCHEMA } from './schema.js'

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

/** Rows, change rows and the last change id of one write, in one statement (see the file comment). */
export const COMMIT_SQL = `
WITH d AS (
  DELETE FROM ${SCHEMA}.rr r USING unnest($1::text[], $2::int[], $3::int[], $4::bytea[]) AS x(name, type, class, rdata)
  WHERE r.name = x.name AND r.type = x.type AND r.class = x.class AND r.rdata = x.rdata),
p AS (
  INSERT INTO ${SCHEMA}.rr (${COLUMNS})
  SELECT * FROM unnest($5::text[], $6::int[], $7::int[], $8::bigint[], $9::bytea[], $10::text[], $11::bigint[],
                       $12::text[], $13::bytea[])
  ON CONFLICT (name, type, class, rdata) DO UPDATE SET ttl = excluded.ttl, text = excluded.text,
    expires_ms = excluded.expires_ms, owner = excluded.owner, wire = excluded.wire),
c AS (
  INSERT INTO ${SCHEMA}.change (node, kind, name, type) SELECT $14, 'rr', * FROM unnest($15::text[], $16::int[])
  RETURNING id)
SELECT max(id)::text AS last FROM c`

/**
 * One feed read: the feed rows after the cursor ($1, $2) below the oldest running transaction, AND the current rows
 * of every RRset they name that another node changed (not $3, this node) or that the caller asks again ($4, $5), in
 * one statement: one round trip and one snapshot. Feed rows come with `fid` set, record rows with `fid` NULL.
 */
export const FEED_SQL = `
WITH f AS MATERIALIZED (
  SELECT id, xid, node, kind, name, type FROM ${SCHEMA}.change
  WHERE (xid, id) > ($1::xid8, $2::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY xid, id LIMIT ${FEED_PAGE}),
k AS (
  SELECT name, type FROM f WHERE kind <> 'account' AND node <> $3
  UNION SELECT * FROM unnest($4::text[], $5::int[]))
SELECT id::text AS fid, xid::text AS xid, node, kind, name, type, NULL::int AS class, NULL::bigint AS ttl,
       NULL::bytea AS rdata, NULL::text AS text, NULL::bigint AS expires_ms, NULL::text AS owner, NULL::bytea AS wire
FROM f
UNION ALL
SELECT NULL, NULL, NULL, NULL, r.name, r.type, r.class, r.ttl, r.rdata, r.text, r.expires_ms, r.owner, r.wire
FROM k CROSS JOIN LATERAL (
  SELECT * FROM ${SCHEMA}.rr WHERE rr.name = k.name AND rr.type = k.type OFFSET 0) r`

/** A row of FEED_SQL: a feed row (fid set) or a record row. */
export type FeedReadRow = Row & { fid: string | null; xid: string | null; node: string | null; kind: string | null }

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
 * The parameters of COMMIT_SQL for a write's operations: the last operation per row wins (a statement may not touch
 * a row twice), deletions and upserts as column arrays, and one change row per RRset touched.
 */
export function commitParamsOf(
  ops: readonly SqlOp[],
  nodeId: string,
): { params: unknown[]; touched: [string, number][] } {
  const last = new Map<string, SqlOp>()
  for (const op of ops) {
    const k = `${op.rr.name}\u0000${op.rr.type}\u0000${op.rr.class}\u0000${rdataKey(op.rr.rdata)}`
    last.delete(k)
    last.set(k, op)
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
  }
}

export function rowToZoneRR(r: Row): ZoneRR {
  const rr: ZoneRR = { name: r.name, type: r.type, class: r.class, ttl: Number(r.ttl), rdata: r.rdata, text: r.text }
  if (r.owner === null && r.wire === null) return rr
  return { ...rr, ...(r.owner !== null ? { owner: r.owner } : {}), ...(r.wire !== null ? { wire: r.wire } : {}) }
}
