// One write to the zone, in memory: the ZoneTx a write's callback edits the index through, with the undo log that
// restores the index when the commit fails, the SQL operations the backend must commit, and the net change per
// (name, type) the change feed delivers afterwards. Shared by the SQLite store (store.ts, committed synchronously)
// and the PostgreSQL store (pg/store.ts, committed asynchronously); ZoneStore is what the service sees of either.

import { RRType } from '../dns/wire/rr-table.js'
import type { Clock } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import { nextSerial } from './db.js'
import type { LeaseTable } from './lease-table.js'
import { type Rec, rdataKey, type ZoneIndex, type ZoneRR } from './zone-index.js'

/** Net change of one RRset, delivered after the transaction that made it committed. */
export interface RRsetChange {
  readonly name: string
  readonly type: number
  readonly added: ZoneRR[]
  readonly removed: ZoneRR[]
}

export type ChangeListener = (changes: RRsetChange[], serial: number) => void

/** Edits made inside a write; each call updates the index at once and queues its SQL. */
export interface ZoneTx {
  readonly nowMs: number
  /** Adds `rr` or refreshes it (TTL and lease); returns true when the RRset's content changed. */
  add(rr: ZoneRR, expiresAtMs: number | null): boolean
  /** Removes one record; returns true when it existed. */
  remove(rec: Rec): boolean
  /**
   * Deletes the RRset `type` of `name`, or every RRset of it for type ANY (RFC 2136 2.5.2, 2.5.3): the records the
   * index holds, and, on a store shared by several nodes, whatever the database holds of it when the write commits
   * (records another node committed that this node's index lacks yet). True when the index changed.
   */
  clear(name: string, type: number): boolean
  /** Increments the SOA serial (once per UPDATE that changed something, RFC 2136 section 3.7). */
  bumpSerial(): void
  /**
   * Marks the edits made so far; the function returned undoes every edit made after the mark (index, leases,
   * queued SQL, change feed, serial): an UPDATE refused by a check after applying it (a quota) leaves no trace.
   */
  savepoint(): () => void
}

/**
 * One row to write (`put`: insert or update) or delete, in the order the edits were made; or (`clear`) an RRset or
 * every RRset of a name (type ANY) to delete from the database whatever rows it holds (ZoneTx.clear): a store whose
 * index is the truth has deleted each of them as a `del` before and ignores it.
 */
export type SqlOp =
  | { readonly kind: 'put' | 'del'; readonly rr: ZoneRR; readonly expiresAtMs: number | null }
  | { readonly kind: 'clear'; readonly name: string; readonly type: number }

/**
 * What a write's outcome depends on beyond the records it names itself: RFC 2136 prerequisites and the account's
 * quota. A store shared by several nodes (PostgreSQL) serialises such writes per account across the nodes and
 * re-reads these names from the database before running the write (pg/consistent.ts); a store one process owns
 * (SQLite) ignores it, its index being the truth.
 */
export interface ConsistentRead {
  /** The account's domain (user.ZONE.): the lock, and every name is at or below it. */
  readonly domain: string
  /** Names whose every RRset the write reads or deletes. */
  readonly names: readonly string[]
  /** Re-read every record of the domain too (the quota counts them). */
  readonly wholeAccount: boolean
}

export interface WriteOptions {
  /** Keep the change listeners for emitDeferred() (the update queue answers first). */
  readonly deferChanges?: boolean
  /** The writes in this batch that must see every other node's committed data (shared stores only). */
  readonly consistent?: readonly ConsistentRead[]
  /**
   * With `consistent`: the accounts (domains) of all the batch's writes, which a shared store locks before the
   * batch runs (pg/consistent.ts).
   */
  readonly accounts?: readonly string[]
}

/** What DnsService, the update queue and the notify service use of a store (SQLite or PostgreSQL). */
export interface ZoneStore {
  readonly zone: string
  /** Other processes write the same data (PostgreSQL): the index may lag them by the feed delay. */
  readonly shared: boolean
  readonly index: ZoneIndex
  readonly leases: LeaseTable<Rec>
  readonly serial: number
  readonly clock: Clock
  /**
   * 'local': DnsService runs leases out with its own timer (one process owns the data). 'store': the store does it
   * (PostgreSQL: by the database's clock, exactly once across the nodes) and the service must not.
   */
  readonly leaseExpiry: 'local' | 'store'
  onChange(fn: ChangeListener): () => void
  recordsAtOrBelow(name: string): Rec[]
  /**
   * Runs `fn` as one atomic change. SQLite returns the result after its synchronous COMMIT; PostgreSQL returns a
   * promise settled after its COMMIT. Either way the index is restored when the commit fails.
   */
  write<T>(fn: (tx: ZoneTx) => T, opts?: WriteOptions): T | Promise<T>
  /** Runs the change listeners for writes made with `deferChanges`, in commit order. */
  emitDeferred(): void
}

export interface OpenZoneTx {
  readonly tx: ZoneTx
  readonly ops: readonly SqlOp[]
  /** The serial after the edits so far. */
  readonly serial: number
  /** Undoes every edit (the commit failed or the callback threw). */
  rollback(): void
  /** The net change per RRset, for the listeners. */
  changes(): RRsetChange[]
}

/**
 * The change listeners of a store, and the changes of writes made with `deferChanges` that wait for
 * emitDeferred(): the update queue answers a batch's UPDATEs first and fans the change out to LLQ/Push watchers
 * afterwards (still after the COMMIT, in commit order). Both stores hold one.
 */
export class ChangeFanout {
  readonly #log: Logger
  readonly #listeners = new Set<ChangeListener>()
  readonly #deferred: { changes: RRsetChange[]; serial: number }[] = []

  constructor(log: Logger) {
    this.#log = log
  }

  /** Subscribes; returns the unsubscribe function. */
  on(fn: ChangeListener): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** A committed write's changes: delivered now, or kept for emitDeferred() when the writer asked to defer them. */
  committed(changes: RRsetChange[], serial: number, defer: boolean | undefined): void {
    if (!changes.length) return
    if (defer) this.#deferred.push({ changes, serial })
    else this.emit(changes, serial)
  }

  /** Delivers the deferred changes, in commit order. */
  emitDeferred(): void {
    while (this.#deferred.length) {
      const d = this.#deferred.shift()!
      this.emit(d.changes, d.serial)
    }
  }

  /** Runs every listener; one that throws is logged and does not stop the others. */
  emit(changes: RRsetChange[], serial: number): void {
    for (const fn of this.#listeners) {
      try {
        fn(changes, serial)
      } catch (e) {
        this.#log.error('store.listener_failed', { err: String(e) })
      }
    }
  }

  clear(): void {
    this.#listeners.clear()
  }
}

/** Opens an in-memory write on `index` and `leases`, starting at `serial`, at time `nowMs`. */
export function beginZoneTx(index: ZoneIndex, leases: LeaseTable<Rec>, serial: number, nowMs: number): OpenZoneTx {
  const ops: SqlOp[] = []
  const undo: (() => void)[] = []
  const net = new Map<
    string,
    { name: string; type: number; added: Map<string, ZoneRR>; removed: Map<string, ZoneRR> }
  >()
  let cur = serial
  const idx = index
  const track = (rr: ZoneRR, added: boolean): void => {
    const k = `${rr.name}\u0000${rr.type}`
    let e = net.get(k)
    if (!e) {
      e = { name: rr.name, type: rr.type, added: new Map(), removed: new Map() }
      net.set(k, e)
    }
    const rk = rdataKey(rr.rdata)
    if (added) {
      if (!e.removed.delete(rk)) e.added.set(rk, rr)
    } else if (!e.added.delete(rk)) e.removed.set(rk, rr)
  }
  const setLease = (rec: Rec, exp: number | null): void => {
    rec.expiresAtMs = exp
    if (exp === null) leases.delete(rec)
    else leases.set(rec, exp)
  }
  const tx: ZoneTx = {
    nowMs,
    add(rr, expiresAtMs) {
      const set = idx.rrset(rr.name, rr.type)
      const old = set?.records.get(rdataKey(rr.rdata))
      let changed = false
      if (old) {
        const prevRR = old.rr
        const prevExp = old.expiresAtMs
        // Same record (case-insensitively equal): a new TTL or a new spelling replaces the stored one.
        if (prevRR.ttl !== rr.ttl || prevRR.text !== rr.text || prevRR.owner !== rr.owner) idx.replaceRR(old, rr)
        setLease(old, expiresAtMs)
        undo.push(() => {
          idx.replaceRR(old, prevRR)
          setLease(old, prevExp)
        })
      } else {
        const rec: Rec = { rr, expiresAtMs }
        idx.insert(rec)
        setLease(rec, expiresAtMs)
        undo.push(() => {
          idx.delete(rec)
          leases.delete(rec)
          track(rr, false)
        })
        track(rr, true)
        changed = true
      }
      ops.push({ kind: 'put', rr, expiresAtMs })
      // RFC 2181 section 5.2: all RRs of an RRset share one TTL; an add with a new TTL sets it for the set.
      if (set) {
        for (const other of set.records.values()) {
          if (other.rr.ttl === rr.ttl) continue
          const prev = other.rr
          const next = { ...prev, ttl: rr.ttl }
          idx.replaceRR(other, next)
          undo.push(() => idx.replaceRR(other, prev))
          ops.push({ kind: 'put', rr: next, expiresAtMs: other.expiresAtMs })
        }
      }
      return changed
    },
    remove(rec) {
      if (!idx.delete(rec)) return false
      leases.delete(rec)
      const exp = rec.expiresAtMs
      undo.push(() => {
        idx.insert(rec)
        setLease(rec, exp)
        track(rec.rr, true)
      })
      track(rec.rr, false)
      ops.push({ kind: 'del', rr: rec.rr, expiresAtMs: null })
      return true
    },
    clear(name, type) {
      const node = idx.node(name)
      let changed = false
      if (node) {
        const victims: Rec[] = []
        if (type === RRType.ANY) for (const set of node.rrsets.values()) victims.push(...set.records.values())
        else {
          const set = node.rrsets.get(type)
          if (set) victims.push(...set.records.values())
        }
        for (const v of victims) changed = tx.remove(v) || changed
      }
      ops.push({ kind: 'clear', name, type })
      return changed
    },
    bumpSerial() {
      cur = nextSerial(cur)
    },
    savepoint() {
      const nUndo = undo.length
      const nOps = ops.length
      const serialAt = cur
      return () => {
        for (let i = undo.length - 1; i >= nUndo; i--) undo[i]!()
        undo.length = nUndo
        ops.length = nOps
        cur = serialAt
      }
    },
  }
  return {
    tx,
    ops,
    get serial() {
      return cur
    },
    rollback() {
      for (let i = undo.length - 1; i >= 0; i--) undo[i]!()
      undo.length = 0
    },
    changes() {
      const out: RRsetChange[] = []
      for (const e of net.values())
        if (e.added.size || e.removed.size)
          out.push({ name: e.name, type: e.type, added: [...e.added.values()], removed: [...e.removed.values()] })
      return out
    },
  }
}
