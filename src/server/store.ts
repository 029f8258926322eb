// The zone store: SQLite (db.ts) for durability, ZoneIndex for answering, LeaseTable for expiry, and the change
// feed other components (LLQ, DNS Push) subscribe to.
//
// A write runs synchronously: the callback edits the index through a ZoneTx (which keeps an undo log and queues
// the SQL), then the SQL runs in one transaction. Nothing else can run on the event loop in between, so no query
// sees uncommitted data; if the COMMIT throws, the undo log restores the index and the error propagates.
// Change listeners run after the COMMIT, with the net change per (name, type) over the whole write; with
// `deferChanges` they run only when the writer calls emitDeferred(), so the update queue answers the UPDATEs of a
// batch first and fans the change out to LLQ/Push watchers afterwards (still after the COMMIT, in commit order).
import type { Clock } from '../io/clock.js'
import { type Logger, nullLogger } from '../io/log.js'
import { type Db, getMeta, nextSerial, openDb, type SyncMode, setMeta } from './db.js'
import { LeaseTable } from './lease-table.js'
import { isAtOrBelow, type Rec, rdataKey, ZoneIndex, type ZoneRR } from './zone-index.js'

/** Net change of one RRset, delivered after the transaction that made it committed. */
export interface RRsetChange {
  readonly name: string
  readonly type: number
  readonly added: ZoneRR[]
  readonly removed: ZoneRR[]
}

export type ChangeListener = (changes: RRsetChange[], serial: number) => void

/** Edits made inside Store.write(); each call updates the index at once and queues its SQL. */
export interface ZoneTx {
  readonly nowMs: number
  /** Adds `rr` or refreshes it (TTL and lease); returns true when the RRset's content changed. */
  add(rr: ZoneRR, expiresAtMs: number | null): boolean
  /** Removes one record; returns true when it existed. */
  remove(rec: Rec): boolean
  /** Increments the SOA serial (once per UPDATE that changed something, RFC 2136 section 3.7). */
  bumpSerial(): void
  /**
   * Marks the edits made so far; the function returned undoes every edit made after the mark (index, leases,
   * queued SQL, change feed, serial): an UPDATE refused by a check after applying it (a quota) leaves no trace.
   */
  savepoint(): () => void
}

interface SqlOp {
  readonly kind: 'put' | 'del'
  readonly rr: ZoneRR
  readonly expiresAtMs: number | null
}

export interface StoreOptions {
  readonly dir: string
  /** FQDN of the zone, lower case with trailing dot. */
  readonly zone: string
  readonly sync?: SyncMode
}

export class Store {
  readonly zone: string
  readonly db: Db
  readonly index: ZoneIndex
  readonly leases = new LeaseTable<Rec>()
  readonly #clock: Clock
  readonly #log: Logger
  readonly #listeners = new Set<ChangeListener>()
  readonly #deferred: { changes: RRsetChange[]; serial: number }[] = []
  #serial: number
  #externalGen: string
  #dataVersion: number
  /**
   * PRAGMA data_version, prepared once: checkExternal runs on every signed message, and db.pragma() prepares its
   * statement on every call (15 % of the CPU of a signed UPDATE in a profile; the prepared read costs ~1 us).
   */
  readonly #dataVersionStmt: { get(): unknown }
  readonly #sql: {
    put: (rr: ZoneRR, exp: number | null) => void
    del: (rr: ZoneRR) => void
    serial: (s: number) => void
  }

  constructor(deps: { clock: Clock; log?: Logger }, opts: StoreOptions) {
    this.#clock = deps.clock
    this.#log = deps.log ?? nullLogger
    this.zone = opts.zone
    this.db = openDb(opts.dir, opts.zone, opts.sync ? { sync: opts.sync } : {})
    this.index = new ZoneIndex(opts.zone)
    const put = this.db.prepare(
      `INSERT INTO rr (name, type, class, ttl, rdata, text, expires_ms, owner, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name, type, class, rdata) DO UPDATE SET ttl = excluded.ttl, text = excluded.text,
       expires_ms = excluded.expires_ms, owner = excluded.owner, wire = excluded.wire`,
    )
    const del = this.db.prepare('DELETE FROM rr WHERE name = ? AND type = ? AND class = ? AND rdata = ?')
    const ser = this.db.prepare("UPDATE meta SET value = ? WHERE key = 'serial'")
    this.#sql = {
      put: (rr, exp) =>
        put.run(rr.name, rr.type, rr.class, rr.ttl, rr.rdata, rr.text, exp, rr.owner ?? null, rr.wire ?? null),
      del: (rr) => del.run(rr.name, rr.type, rr.class, rr.rdata),
      serial: (s) => ser.run(String(s)),
    }
    this.#serial = Number(getMeta(this.db, 'serial') ?? '1')
    this.#externalGen = getMeta(this.db, 'external_gen') ?? '0'
    this.#dataVersionStmt = this.db.prepare('PRAGMA data_version').pluck()
    this.#dataVersion = this.#dataVersionStmt.get() as number
    this.#load()
  }

  get serial(): number {
    return this.#serial
  }

  get clock(): Clock {
    return this.#clock
  }

  /** Subscribes to committed changes (updates, lease expiries, external edits); returns the unsubscribe function. */
  onChange(fn: ChangeListener): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** Every record at or below `name`, from the index. */
  recordsAtOrBelow(name: string): Rec[] {
    const out: Rec[] = []
    for (const rec of this.index.records()) if (isAtOrBelow(rec.rr.name, name)) out.push(rec)
    return out
  }

  /**
   * Runs `fn` as one atomic change: index edits apply at once, the SQL commits in one transaction before this
   * returns, and listeners see the net change afterwards. Throws (with the index restored) if the COMMIT fails.
   */
  write<T>(fn: (tx: ZoneTx) => T, opts: { deferChanges?: boolean } = {}): T {
    const ops: SqlOp[] = []
    const undo: (() => void)[] = []
    const net = new Map<
      string,
      { name: string; type: number; added: Map<string, ZoneRR>; removed: Map<string, ZoneRR> }
    >()
    const serialBefore = this.#serial
    let serial = this.#serial
    const nowMs = this.#clock.now()
    const idx = this.index
    const leases = this.leases
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
      bumpSerial() {
        serial = nextSerial(serial)
      },
      savepoint() {
        const nUndo = undo.length
        const nOps = ops.length
        const serialAt = serial
        return () => {
          for (let i = undo.length - 1; i >= nUndo; i--) undo[i]!()
          undo.length = nUndo
          ops.length = nOps
          serial = serialAt
        }
      },
    }
    let result: T
    try {
      result = fn(tx)
      if (ops.length > 0 || serial !== serialBefore) {
        const sql = this.#sql
        this.db.transaction(() => {
          for (const op of ops) op.kind === 'put' ? sql.put(op.rr, op.expiresAtMs) : sql.del(op.rr)
          if (serial !== serialBefore) sql.serial(serial)
        })()
      }
    } catch (e) {
      for (let i = undo.length - 1; i >= 0; i--) undo[i]!()
      throw e
    }
    this.#serial = serial
    const changes: RRsetChange[] = []
    for (const e of net.values())
      if (e.added.size || e.removed.size)
        changes.push({ name: e.name, type: e.type, added: [...e.added.values()], removed: [...e.removed.values()] })
    if (changes.length) {
      if (opts.deferChanges) this.#deferred.push({ changes, serial })
      else this.#emit(changes)
    }
    return result
  }

  /** Runs the change listeners for writes made with `deferChanges`, in commit order. */
  emitDeferred(): void {
    while (this.#deferred.length) {
      const d = this.#deferred.shift()!
      this.#emit(d.changes, d.serial)
    }
  }

  /**
   * Picks up edits made by another process (`autotunnel account remove` deletes a user's records): when SQLite's
   * data_version moved and the external generation changed, reloads the index and emits the difference.
   * Returns true when another connection committed anything (accounts included).
   */
  checkExternal(): boolean {
    const v = this.#dataVersionStmt.get() as number
    if (v === this.#dataVersion) return false
    this.#dataVersion = v
    const gen = getMeta(this.db, 'external_gen') ?? '0'
    if (gen !== this.#externalGen) {
      this.#externalGen = gen
      this.#reload()
    }
    return true
  }

  close(): void {
    this.#listeners.clear()
    if (this.db.open) this.db.close()
  }

  #emit(changes: RRsetChange[], serial = this.#serial): void {
    for (const fn of this.#listeners) {
      try {
        fn(changes, serial)
      } catch (e) {
        this.#log.error('store.listener_failed', { err: String(e) })
      }
    }
  }

  #rows(): (Row & { expires_ms: number | null })[] {
    return this.db.prepare('SELECT name, type, class, ttl, rdata, text, expires_ms, owner, wire FROM rr').all() as never
  }

  #load(): void {
    for (const r of this.#rows()) {
      const rec: Rec = { rr: rowToZoneRR(r), expiresAtMs: r.expires_ms }
      this.index.insert(rec)
      if (rec.expiresAtMs !== null) this.leases.set(rec, rec.expiresAtMs)
    }
    this.#log.info('store.loaded', {
      zone: this.zone,
      records: this.index.recordCount,
      leases: this.leases.size,
      serial: this.#serial,
    })
  }

  #reload(): void {
    const before = new Map<string, Rec>()
    for (const rec of this.index.records())
      before.set(`${rec.rr.name}\u0000${rec.rr.type}\u0000${rdataKey(rec.rr.rdata)}`, rec)
    const net = new Map<string, RRsetChange>()
    const entry = (rr: ZoneRR): RRsetChange => {
      const k = `${rr.name}\u0000${rr.type}`
      let e = net.get(k)
      if (!e) net.set(k, (e = { name: rr.name, type: rr.type, added: [], removed: [] }))
      return e
    }
    for (const r of this.#rows()) {
      const k = `${r.name}\u0000${r.type}\u0000${rdataKey(r.rdata)}`
      const rr = rowToZoneRR(r)
      const old = before.get(k)
      if (old) {
        before.delete(k)
        if (old.rr.ttl !== rr.ttl || old.rr.text !== rr.text || old.rr.owner !== rr.owner) this.index.replaceRR(old, rr)
        old.expiresAtMs = r.expires_ms
        if (r.expires_ms === null) this.leases.delete(old)
        else this.leases.set(old, r.expires_ms)
      } else {
        const rec: Rec = { rr, expiresAtMs: r.expires_ms }
        this.index.insert(rec)
        if (r.expires_ms !== null) this.leases.set(rec, r.expires_ms)
        entry(rr).added.push(rr)
      }
    }
    for (const rec of before.values()) {
      this.index.delete(rec)
      this.leases.delete(rec)
      entry(rec.rr).removed.push(rec.rr)
    }
    this.#serial = Number(getMeta(this.db, 'serial') ?? this.#serial)
    this.#log.info('store.reloaded', { records: this.index.recordCount, changed: net.size })
    if (net.size) this.#emit([...net.values()])
  }
}

interface Row {
  name: string
  type: number
  class: number
  ttl: number
  rdata: Buffer
  text: string
  owner: string | null
  wire: Buffer | null
}

function rowToZoneRR(r: Row): ZoneRR {
  const rr: ZoneRR = { name: r.name, type: r.type, class: r.class, ttl: r.ttl, rdata: r.rdata, text: r.text }
  if (r.owner === null && r.wire === null) return rr
  return { ...rr, ...(r.owner !== null ? { owner: r.owner } : {}), ...(r.wire !== null ? { wire: r.wire } : {}) }
}

export { setMeta }
