// The zone store on a PostgreSQL database shared by any number of server nodes (docs/cluster.md).
//
// Every node keeps the whole zone in memory (ZoneIndex, as on SQLite) and answers from it; the database is the
// truth and the way nodes hear of each other's changes:
// - A write edits the index at once through a ZoneTx (zone-tx.ts), then commits its rows and one change-feed row
//   per RRset touched in ONE statement (data-modifying CTEs: one round trip, one transaction, one fsync for the
//   whole group-commit batch). The update queue answers after that COMMIT; a failed COMMIT undoes the index.
// - The change feed (autotunnel.change) is read by cursor on (xid, id), only below the oldest running
//   transaction (pg_snapshot_xmin), so a transaction that commits after a later-numbered one is never skipped.
//   The feed says which RRsets changed; the node re-reads those RRsets and applies the difference to its index
//   and its LLQ/Push watchers. Re-reading (rather than replaying row operations) makes the result the database's
//   current state whatever order transactions committed in. A node skips the RRsets of its own rows (its index
//   has them already); feed application and the node's own commits never overlap (#exclusive), so a re-read can
//   never undo an edit of the node's own that is still committing.
// - NOTIFY is only a doorbell, sent after the data COMMIT on its own connection with synchronous_commit off (a
//   notifying COMMIT takes a database-wide lock); the feed is also polled, so a lost NOTIFY costs latency only.
// - Lease expiry runs here, not in DnsService: every node sweeps rows whose expires_ms (the database's clock)
//   has passed with DELETE ... FOR UPDATE SKIP LOCKED, writing the 'expire' feed rows in the same statement, so a
//   lease expires exactly once across the cluster, whichever nodes are up.
// - The zone serial is the last change-feed id the node has seen (modulo 2^32): no row every update fights over.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Clock, TimerHandle } from '../../io/clock.js'
import { type Logger, nullLogger } from '../../io/log.js'
import type { Account } from '../accounts.js'
import { StoreError } from '../db.js'
import { LeaseTable } from '../lease-table.js'
import { isAtOrBelow, type Rec, rdataKey, ZoneIndex, type ZoneRR } from '../zone-index.js'
import {
  beginZoneTx,
  type ChangeListener,
  type RRsetChange,
  type SqlOp,
  type ZoneStore,
  type ZoneTx,
} from '../zone-tx.js'
import { FEED_CHANNEL, pgListAccounts } from './accounts.js'
import { migrate, SCHEMA, serialFromChangeId } from './schema.js'

/** Feed rows read per query. */
const FEED_PAGE = 5000
/** The feed is polled this often besides the doorbell (a NOTIFY is lost while a listener reconnects). */
const FEED_POLL_MS = 250
/** Lease sweep period (and the upper bound of how late a lease is removed). */
const SWEEP_MS = 1000
const SWEEP_MIN_MS = 20
const SWEEP_BATCH = 1000
const RECONNECT_MS = 500
/**
 * Feed rows older than this are deleted (by whichever node sweeps, at most once a minute); a node that has not
 * read the feed for half as long re-reads the whole zone instead of trusting its cursor.
 */
const FEED_RETENTION_MS = 3_600_000
const PRUNE_EVERY_MS = 60_000
const CONNECT_TIMEOUT_MS = 3000
/** A statement that takes longer fails (the update gets SERVFAIL) rather than holding the queue. */
const STATEMENT_TIMEOUT_MS = 10_000

export interface PgStoreOptions {
  /** postgres://USER:PASSWORD@HOST:PORT/DB (libpq-style URL, as `pg` takes it). */
  readonly url: string
  /** FQDN of the zone, lower case with trailing dot. */
  readonly zone: string
  /** This node's name in the feed and the heartbeat table. @default random */
  readonly nodeId?: string
  /** What this node publishes about itself in autotunnel.node (addresses, ports). */
  readonly nodeInfo?: Record<string, unknown>
}

interface Row {
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

interface FeedRow {
  id: string
  xid: string
  node: string
  kind: string
  name: string
  type: number
}

const COLUMNS = 'name, type, class, ttl, rdata, text, expires_ms, owner, wire'

/** Rows, change rows and the last change id of one write, in one statement (see the file comment). */
const COMMIT_SQL = `
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

const FEED_SQL = `
SELECT id::text AS id, xid::text AS xid, node, kind, name, type FROM ${SCHEMA}.change
WHERE (xid, id) > ($1::xid8, $2::bigint) AND xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid, id LIMIT ${FEED_PAGE}`

/** Expired leases, a batch at a time, by the database's clock; rows another node is deleting are skipped. */
const SWEEP_SQL = `
WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
due AS (
  SELECT r.name, r.type, r.class, r.rdata FROM ${SCHEMA}.rr r, now WHERE r.expires_ms <= now.ms
  ORDER BY r.expires_ms LIMIT ${SWEEP_BATCH} FOR UPDATE OF r SKIP LOCKED),
del AS (
  DELETE FROM ${SCHEMA}.rr r USING due
  WHERE r.name = due.name AND r.type = due.type AND r.class = due.class AND r.rdata = due.rdata
  RETURNING r.name, r.type),
ch AS (INSERT INTO ${SCHEMA}.change (node, kind, name, type) SELECT DISTINCT '', 'expire', name, type FROM del)
SELECT (SELECT count(*) FROM del)::int AS n, (SELECT ms FROM now)::text AS now_ms`

export class PgStore implements ZoneStore {
  readonly zone: string
  readonly index: ZoneIndex
  readonly leases = new LeaseTable<Rec>()
  readonly leaseExpiry = 'store' as const
  readonly nodeId: string
  readonly #clock: Clock
  readonly #log: Logger
  readonly #opts: PgStoreOptions
  readonly #pool: pg.Pool
  /** The doorbell's own connection: synchronous_commit off, so a NOTIFY costs no fsync. */
  readonly #bell: pg.Pool
  readonly #listeners = new Set<ChangeListener>()
  readonly #accountListeners = new Set<() => void>()
  readonly #deferred: { changes: RRsetChange[]; serial: number }[] = []
  #tail: Promise<unknown> = Promise.resolve()
  #cursor = { xid: '0', id: '-1' }
  #lastId = 0n
  #serial = 1
  /** Database clock minus local clock, ms (leases are times of the database's clock). */
  #offsetMs = 0
  #accounts: Account[] = []
  #accountsChanged = false
  /** A COMMIT failed with an unknown outcome: re-read the whole zone before trusting the index again. */
  #resync = false
  #reading = false
  #readAgain = false
  #ringing = false
  #ringAgain = false
  #closed = false
  #pollTimer: TimerHandle | undefined
  #sweepTimer: TimerHandle | undefined
  #listener: pg.Client | undefined
  /** Monotonic time of the last successful feed read, and of the last prune. */
  #feedReadAt = 0
  #prunedAt = -Infinity
  #listening: Promise<void> | undefined
  /** Counters for metrics and tests. */
  readonly stats = { feedRows: 0, feedErrors: 0, reconciled: 0, expired: 0, commitErrors: 0 }

  private constructor(deps: { clock: Clock; log?: Logger }, opts: PgStoreOptions) {
    this.#clock = deps.clock
    this.#log = deps.log ?? nullLogger
    this.#opts = opts
    this.zone = opts.zone
    this.index = new ZoneIndex(opts.zone)
    this.nodeId = opts.nodeId ?? randomBytes(8).toString('hex')
    const base = {
      connectionString: opts.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      application_name: `autotunnel ${this.nodeId}`,
      keepAlive: true,
    }
    this.#pool = new pg.Pool({ ...base, max: 4 })
    this.#bell = new pg.Pool({ ...base, max: 1, options: '-c synchronous_commit=off' })
    // An idle connection dying (the database restarting) is reported here; the pool replaces it on next use.
    for (const p of [this.#pool, this.#bell]) p.on('error', (e) => this.#log.warn('pg.idle_error', { err: e.message }))
  }

  /** Connects, creates or migrates the schema, loads the zone and the accounts, and starts following the feed. */
  static async open(deps: { clock: Clock; log?: Logger }, opts: PgStoreOptions): Promise<PgStore> {
    const s = new PgStore(deps, opts)
    try {
      await s.#init()
    } catch (e) {
      await s.close()
      throw e
    }
    return s
  }

  get serial(): number {
    return this.#serial
  }

  get clock(): Clock {
    return this.#clock
  }

  /** The accounts as last read from the database (KeyRing's source). */
  accounts(): Account[] {
    return this.#accounts
  }

  /** True once after the account list changed (KeyRing's checkExternal). */
  takeAccountsChanged(): boolean {
    const c = this.#accountsChanged
    this.#accountsChanged = false
    return c
  }

  /** Called after the account list was re-read because some node or the CLI changed it. */
  onAccounts(fn: () => void): () => void {
    this.#accountListeners.add(fn)
    return () => this.#accountListeners.delete(fn)
  }

  onChange(fn: ChangeListener): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  recordsAtOrBelow(name: string): Rec[] {
    const out: Rec[] = []
    for (const rec of this.index.records()) if (isAtOrBelow(rec.rr.name, name)) out.push(rec)
    return out
  }

  /** See ZoneStore.write: resolves after the COMMIT; the index is restored if it fails. */
  write<T>(fn: (tx: ZoneTx) => T, opts: { deferChanges?: boolean } = {}): Promise<T> {
    return this.#exclusive(async () => {
      if (this.#closed) throw new StoreError('store closed')
      const w = beginZoneTx(this.index, this.leases, this.#serial, this.#clock.now() + this.#offsetMs)
      let result: T
      try {
        result = fn(w.tx)
        if (w.ops.length) await this.#commit(w.ops)
      } catch (e) {
        w.rollback()
        throw e
      }
      const changes = w.changes()
      if (changes.length) {
        if (opts.deferChanges) this.#deferred.push({ changes, serial: this.#serial })
        else this.#emit(changes)
      }
      return result
    })
  }

  emitDeferred(): void {
    while (this.#deferred.length) {
      const d = this.#deferred.shift()!
      this.#emit(d.changes, d.serial)
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#clock.clearTimeout(this.#pollTimer)
    this.#clock.clearTimeout(this.#sweepTimer)
    // Writes queued before close (the update queue's last batch) still commit.
    await this.#exclusive(async () => {}).catch(() => {})
    this.#closed = true
    this.#clock.clearTimeout(this.#pollTimer)
    this.#clock.clearTimeout(this.#sweepTimer)
    await this.#listener?.end().catch(() => {})
    await this.#listening
    await this.#pool
      .query(`DELETE FROM ${SCHEMA}.node WHERE id = $1`, [this.nodeId])
      .catch(() => {})
      .then(() => Promise.all([this.#pool.end(), this.#bell.end()]))
      .catch(() => {})
    this.#listeners.clear()
  }

  /** Reads the feed now (the doorbell rang, a poll, tests). */
  kick(): void {
    if (this.#closed) return
    if (this.#reading) {
      this.#readAgain = true
      return
    }
    this.#reading = true
    void (async () => {
      try {
        do {
          this.#readAgain = false
          await this.#exclusive(() => this.#applyFeed())
        } while (this.#readAgain && !this.#closed)
      } catch (e) {
        this.stats.feedErrors++
        this.#log.warn('pg.feed_failed', { err: (e as Error).message })
      } finally {
        this.#reading = false
      }
    })()
  }

  /** Runs `fn` after every write and feed application before it; one at a time. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn)
    this.#tail = run.catch(() => {})
    return run
  }

  async #init(): Promise<void> {
    const c = await this.#pool.connect()
    try {
      await migrate(c, this.zone)
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      const t0 = this.#clock.now()
      const snap = (
        await c.query<{ xmin: string; now_ms: string }>(
          `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
                  (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS now_ms`,
        )
      ).rows[0]!
      this.#offsetMs = Number(snap.now_ms) - (t0 + this.#clock.now()) / 2
      const rows = (await c.query<Row>(`SELECT ${COLUMNS} FROM ${SCHEMA}.rr`)).rows
      this.#accounts = await pgListAccounts(c)
      // The sequence too: feed rows are pruned, and the serial must not go back when the table is empty.
      const last = (
        await c.query<{ id: string }>(
          `SELECT greatest((SELECT coalesce(max(id), 0) FROM ${SCHEMA}.change),
             (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM ${SCHEMA}.change_id_seq))::text AS id`,
        )
      ).rows[0]!.id
      await c.query('COMMIT')
      // Everything committed below xmin is in the snapshot; rows from xmin on are read (again) from the feed.
      this.#cursor = { xid: snap.xmin, id: '-1' }
      this.#feedReadAt = this.#clock.monotonic()
      this.#lastId = BigInt(last)
      this.#serial = serialFromChangeId(this.#lastId)
      for (const r of rows) {
        const rec: Rec = { rr: rowToZoneRR(r), expiresAtMs: r.expires_ms === null ? null : Number(r.expires_ms) }
        this.index.insert(rec)
        if (rec.expiresAtMs !== null) this.leases.set(rec, rec.expiresAtMs)
      }
    } finally {
      c.release()
    }
    await this.#heartbeat()
    this.#log.info('store.loaded', {
      zone: this.zone,
      store: 'postgres',
      node: this.nodeId,
      records: this.index.recordCount,
      leases: this.leases.size,
      accounts: this.#accounts.length,
      serial: this.#serial,
      clockOffsetMs: Math.round(this.#offsetMs),
    })
    this.#listening = this.#listen()
    const poll = (): void => {
      this.kick()
      this.#pollTimer = this.#clock.setTimeout(poll, FEED_POLL_MS)
    }
    this.#pollTimer = this.#clock.setTimeout(poll, FEED_POLL_MS)
    this.#armSweep(0)
  }

  /** Commits a write's operations (last one per row wins) and its change rows; sets the serial from their ids. */
  async #commit(ops: readonly SqlOp[]): Promise<void> {
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
    let lastId: string | null
    try {
      const r = await this.#pool.query<{ last: string | null }>(COMMIT_SQL, [
        ...del,
        ...put,
        putWire,
        this.nodeId,
        names.map((n) => n[0]),
        names.map((n) => n[1]),
      ])
      lastId = r.rows[0]?.last ?? null
    } catch (e) {
      // The COMMIT may have happened (the connection died after it): the index is undone by the caller, so the
      // whole zone is re-read from the database on the next feed read.
      this.#resync = true
      this.stats.commitErrors++
      throw e
    }
    if (lastId !== null && BigInt(lastId) > this.#lastId) {
      this.#lastId = BigInt(lastId)
      this.#serial = serialFromChangeId(this.#lastId)
    }
    this.#ring()
  }

  /** Reads the feed from the cursor to its end, applying each page (called under #exclusive). */
  async #applyFeed(): Promise<void> {
    if (this.#clock.monotonic() - this.#feedReadAt > FEED_RETENTION_MS / 2) this.#resync = true
    if (this.#resync) {
      const changes = await this.#reconcile(undefined)
      this.#resync = false
      this.#log.info('store.resynced', { changed: changes.length })
      if (changes.length) this.#emit(changes)
    }
    for (;;) {
      const rows = (await this.#pool.query<FeedRow>(FEED_SQL, [this.#cursor.xid, this.#cursor.id])).rows
      this.#feedReadAt = this.#clock.monotonic()
      if (rows.length === 0) return
      this.stats.feedRows += rows.length
      const keys = new Map<string, [string, number]>()
      let accounts = false
      for (const r of rows) {
        const id = BigInt(r.id)
        if (id > this.#lastId) this.#lastId = id
        if (r.kind === 'account') accounts = true
        else if (r.node !== this.nodeId) keys.set(`${r.name}\u0000${r.type}`, [r.name, r.type])
      }
      const changes = keys.size ? await this.#reconcile([...keys.values()]) : []
      if (accounts) {
        this.#accounts = await pgListAccounts(this.#pool)
        this.#accountsChanged = true
      }
      const lastRow = rows[rows.length - 1]!
      this.#cursor = { xid: lastRow.xid, id: lastRow.id }
      this.#serial = serialFromChangeId(this.#lastId)
      if (changes.length) this.#emit(changes)
      if (accounts)
        for (const fn of this.#accountListeners) {
          try {
            fn()
          } catch (e) {
            this.#log.error('store.account_listener_failed', { err: String(e) })
          }
        }
      if (rows.length < FEED_PAGE) return
    }
  }

  /**
   * Makes the index hold what the database holds for the RRsets `keys` (every RRset when undefined), and returns
   * the differences as changes for the watchers.
   */
  async #reconcile(keys: [string, number][] | undefined): Promise<RRsetChange[]> {
    const rows = keys
      ? (
          await this.#pool.query<Row>(
            `SELECT ${COLUMNS} FROM ${SCHEMA}.rr WHERE (name, type) IN (SELECT * FROM unnest($1::text[], $2::int[]))`,
            [keys.map((k) => k[0]), keys.map((k) => k[1])],
          )
        ).rows
      : (await this.#pool.query<Row>(`SELECT ${COLUMNS} FROM ${SCHEMA}.rr`)).rows
    const byKey = new Map<string, { name: string; type: number; rows: Row[] }>()
    const slot = (name: string, type: number): { name: string; type: number; rows: Row[] } => {
      const k = `${name}\u0000${type}`
      let e = byKey.get(k)
      if (!e) byKey.set(k, (e = { name, type, rows: [] }))
      return e
    }
    if (keys) for (const [name, type] of keys) slot(name, type)
    else for (const rec of this.index.records()) slot(rec.rr.name, rec.rr.type)
    for (const r of rows) slot(r.name, r.type).rows.push(r)
    const out: RRsetChange[] = []
    for (const e of byKey.values()) {
      const c = this.#reconcileSet(e.name, e.type, e.rows)
      if (c) out.push(c)
    }
    this.stats.reconciled += byKey.size
    return out
  }

  #reconcileSet(name: string, type: number, rows: Row[]): RRsetChange | undefined {
    const have = new Map(this.index.rrset(name, type)?.records ?? [])
    const added: ZoneRR[] = []
    const removed: ZoneRR[] = []
    for (const r of rows) {
      const rr = rowToZoneRR(r)
      const exp = r.expires_ms === null ? null : Number(r.expires_ms)
      const k = rdataKey(rr.rdata)
      const old = have.get(k)
      let rec: Rec
      if (old) {
        have.delete(k)
        if (old.rr.ttl !== rr.ttl || old.rr.text !== rr.text || old.rr.owner !== rr.owner) this.index.replaceRR(old, rr)
        rec = old
        rec.expiresAtMs = exp
      } else {
        rec = { rr, expiresAtMs: exp }
        this.index.insert(rec)
        added.push(rr)
      }
      if (exp === null) this.leases.delete(rec)
      else this.leases.set(rec, exp)
    }
    for (const rec of have.values()) {
      this.index.delete(rec)
      this.leases.delete(rec)
      removed.push(rec.rr)
    }
    return added.length || removed.length ? { name, type, added, removed } : undefined
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

  /** NOTIFY after a COMMIT, coalesced: at most one in flight, one more queued. */
  #ring(): void {
    if (this.#ringing) {
      this.#ringAgain = true
      return
    }
    this.#ringing = true
    this.#bell
      .query('SELECT pg_notify($1, $2)', [FEED_CHANNEL, this.nodeId])
      .catch(() => {})
      .finally(() => {
        this.#ringing = false
        if (this.#ringAgain && !this.#closed) {
          this.#ringAgain = false
          this.#ring()
        }
      })
  }

  /** Holds a LISTEN connection, reconnecting while the database is away; each ring from another node reads the feed. */
  async #listen(): Promise<void> {
    while (!this.#closed) {
      const c = new pg.Client({ connectionString: this.#opts.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS })
      const ended = new Promise<void>((resolve) => {
        c.on('error', (e) => {
          this.#log.warn('pg.listener_error', { err: e.message })
          resolve()
        })
        c.on('end', () => resolve())
      })
      c.on('notification', (n) => {
        if (n.payload !== this.nodeId) this.kick()
      })
      try {
        await c.connect()
        this.#listener = c
        await c.query(`LISTEN ${FEED_CHANNEL}`)
        // Whatever was rung while not listening.
        this.kick()
        await ended
      } catch (e) {
        if (!this.#closed) this.#log.warn('pg.listener_connect_failed', { err: (e as Error).message })
      } finally {
        this.#listener = undefined
        await c.end().catch(() => {})
      }
      if (!this.#closed) await new Promise((r) => setTimeout(r, RECONNECT_MS))
    }
  }

  #armSweep(delayMs: number): void {
    if (this.#closed) return
    this.#clock.clearTimeout(this.#sweepTimer)
    this.#sweepTimer = this.#clock.setTimeout(() => {
      this.#sweep().then(
        (more) => this.#armSweep(more ? 0 : this.#nextSweepMs()),
        () => this.#armSweep(SWEEP_MS),
      )
    }, delayMs)
  }

  #nextSweepMs(): number {
    const next = this.leases.nextExpiryMs()
    if (next === undefined) return SWEEP_MS
    return Math.min(SWEEP_MS, Math.max(SWEEP_MIN_MS, next - (this.#clock.now() + this.#offsetMs)))
  }

  /** One expiry batch and a heartbeat; true when the batch was full (more may be due). */
  async #sweep(): Promise<boolean> {
    const t0 = this.#clock.now()
    let n: number
    try {
      const r = (await this.#pool.query<{ n: number; now_ms: string }>(SWEEP_SQL)).rows[0]!
      n = r.n
      this.#offsetMs = Number(r.now_ms) - (t0 + this.#clock.now()) / 2
      await this.#heartbeat()
      if (this.#clock.monotonic() - this.#prunedAt > PRUNE_EVERY_MS) {
        this.#prunedAt = this.#clock.monotonic()
        await this.#pool.query(
          `DELETE FROM ${SCHEMA}.change WHERE at < clock_timestamp() - make_interval(secs => $1)`,
          [FEED_RETENTION_MS / 1000],
        )
      }
    } catch (e) {
      if (!this.#closed) this.#log.warn('pg.sweep_failed', { err: (e as Error).message })
      throw e
    }
    if (n > 0) {
      this.stats.expired += n
      this.#log.info('lease.expired', { records: n, node: this.nodeId })
      this.#ring()
      this.kick()
    }
    return n >= SWEEP_BATCH
  }

  async #heartbeat(): Promise<void> {
    await this.#pool.query(
      `INSERT INTO ${SCHEMA}.node (id, info) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET seen = clock_timestamp(), info = excluded.info`,
      [this.nodeId, JSON.stringify(this.#opts.nodeInfo ?? {})],
    )
  }
}

function rowToZoneRR(r: Row): ZoneRR {
  const rr: ZoneRR = { name: r.name, type: r.type, class: r.class, ttl: Number(r.ttl), rdata: r.rdata, text: r.text }
  if (r.owner === null && r.wire === null) return rr
  return { ...rr, ...(r.owner !== null ? { owner: r.owner } : {}), ...(r.wire !== null ? { wire: r.wire } : {}) }
}
