// Applying what the database holds to a node's in-memory zone (pg/store.ts): the change feed names RRsets, the node
// reads their rows and makes its index and leases hold exactly those rows. The differences are the changes its
// LLQ and DNS Push watchers are told of.
import type { LeaseTable } from '../lease-table.js'
import { type Rec, rdataKey, type ZoneIndex, type ZoneRR } from '../zone-index.js'
import type { RRsetChange } from '../zone-tx.js'
import { type Row, rowToZoneRR } from './sql.js'

/**
 * Makes `index` hold `rows` (what the database holds for the RRsets `keys`, or for every RRset when `keys` is
 * undefined); returns the differences. Rows of RRsets not in `keys` are ignored (left for their own re-read).
 */
export function applyRows(
  index: ZoneIndex,
  leases: LeaseTable<Rec>,
  keys: readonly (readonly [string, number])[] | undefined,
  rows: readonly Row[],
): { changes: RRsetChange[]; rrsets: number } {
  const byKey = new Map<string, { name: string; type: number; rows: Row[] }>()
  const slot = (name: string, type: number): { name: string; type: number; rows: Row[] } | undefined => {
    const k = `${name}\u0000${type}`
    let e = byKey.get(k)
    if (!e && !keys) byKey.set(k, (e = { name, type, rows: [] }))
    return e
  }
  if (keys) for (const [name, type] of keys) byKey.set(`${name}\u0000${type}`, { name, type, rows: [] })
  else for (const rec of index.records()) slot(rec.rr.name, rec.rr.type)
  for (const r of rows) slot(r.name, r.type)?.rows.push(r)
  const changes: RRsetChange[] = []
  for (const e of byKey.values()) {
    const c = reconcileSet(index, leases, e.name, e.type, e.rows)
    if (c) changes.push(c)
  }
  return { changes, rrsets: byKey.size }
}

function reconcileSet(
  index: ZoneIndex,
  leases: LeaseTable<Rec>,
  name: string,
  type: number,
  rows: readonly Row[],
): RRsetChange | undefined {
  const have = new Map(index.rrset(name, type)?.records ?? [])
  const added: ZoneRR[] = []
  const removed: ZoneRR[] = []
  for (const r of rows) {
    const k = rdataKey(r.rdata)
    const exp = r.expires_ms === null ? null : Number(r.expires_ms)
    const old = have.get(k)
    let rec: Rec
    if (old) {
      have.delete(k)
      const ttl = Number(r.ttl)
      // Unchanged records (the common case: a lease refresh) keep their ZoneRR: no allocation, no index edit.
      if (old.rr.ttl !== ttl || old.rr.text !== r.text || (old.rr.owner ?? null) !== r.owner)
        index.replaceRR(old, rowToZoneRR(r))
      rec = old
      rec.expiresAtMs = exp
    } else {
      const rr = rowToZoneRR(r)
      rec = { rr, expiresAtMs: exp }
      index.insert(rec)
      added.push(rr)
    }
    if (exp === null) leases.delete(rec)
    else leases.set(rec, exp)
  }
  for (const rec of have.values()) {
    index.delete(rec)
    leases.delete(rec)
    removed.push(rec.rr)
  }
  return added.length || removed.length ? { name, type, added, removed } : undefined
}
