// The zone store: SQLite (db.ts) for durability, ZoneIndex for answering, LeaseTable for expiry, and the change
// feed other components (LLQ, DNS Push) subscribe to.
//
// A write runs synchronously: the callback edits the index through a ZoneTx (which keeps an undo log and queues
// the SQL), then the SQL runs in one transaction. Nothing else can run on the event loop in between, so no query
// sees uncommitted data; if the COMMIT throws, the undo log restores the index and the error propagates.
// Change listeners run after the COMMIT, with the net change per (name, type) over the whole write; with
// `deferChanges` they run only when the writer calls emitDeferred() (ChangeFanout in zone-tx.ts).
import type { Clock } from '../io/clock.js'
import { type Logger, nullLogger } from '../io/log.js'
import { type Db, getMeta, openDb, type SyncMode, setMeta } from './db.js'
import { LeaseTable } from './lease-table.js'
import { isAtOrBelow, type Rec, rdataKey, ZoneIndex, type ZoneRR } from './zone-index.js'
import {
  beginZoneTx,
  ChangeFanout,
  type ChangeListener,
  type RRsetChange,
  type WriteOptions,
  type ZoneStore,
  type ZoneTx,
} from './zone-tx.js'

export type { ChangeListener, RRsetChange, ZoneStore, ZoneTx }

export interface StoreOptions {
  readonly dir: string
  /** FQDN of the zone, lower case with trailing dot. */
  readonly zone: string
  readonly sync?: SyncMode
}

export class Store implements ZoneStore {
  readonly zone: string
  /** Leases run out by DnsService's timer (one process owns the file). */
  readonly leaseExpiry = 'local' as const
  /** One process owns the file: the index is the truth (WriteOptions.consistent is not needed). */
  readonly shared = false
  readonly db: Db
  readonly index: ZoneIndex
  readonly leases = new LeaseTable<Rec>()
  readonly #clock: Clock
  readonly #log: Logger
  readonly #fanout: ChangeFanout
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
    this.#fanout = new ChangeFanout(this.#log)
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
    return this.#fanout.on(fn)
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
  write<T>(fn: (tx: ZoneTx) => T, opts: WriteOptions = {}): T {
    const w = beginZoneTx(this.index, this.leases, this.#serial, this.#clock.now())
    let result: T
    try {
      result = fn(w.tx)
      // A `clear` alone (of what the index does not hold) changes nothing here.
      if (w.ops.some((op) => op.kind !== 'clear') || w.serial !== this.#serial) {
        const sql = this.#sql
        const serial = w.serial
        const changedSerial = serial !== this.#serial
        this.db.transaction(() => {
          // A `clear` was committed as the `del` of each record before it: this index is the truth.
          for (const op of w.ops)
            if (op.kind === 'put') sql.put(op.rr, op.expiresAtMs)
            else if (op.kind === 'del') sql.del(op.rr)
          if (changedSerial) sql.serial(serial)
        })()
      }
    } catch (e) {
      w.rollback()
      throw e
    }
    this.#serial = w.serial
    this.#fanout.committed(w.changes(), this.#serial, opts.deferChanges)
    return result
  }

  /** Runs the change listeners for writes made with `deferChanges`, in commit order. */
  emitDeferred(): void {
    this.#fanout.emitDeferred()
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
    this.#fanout.clear()
    if (this.db.open) this.db.close()
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
    if (net.size) this.#fanout.emit([...net.values()], this.#serial)
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
