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
import type { PeerNode } from '../config.js'
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
import { pgListAccounts } from './accounts.js'
import { Doorbell } from './doorbell.js'
import { migrate, SCHEMA, serialFromChangeId } from './schema.js'
import {
  COLUMNS,
  COMMIT_SQL,
  commitParamsOf,
  FEED_PAGE,
  FEED_SQL,
  type FeedRow,
  type Row,
  rowToZoneRR,
  SWEEP_BATCH,
  SWEEP_SQL,
} from './sql.js'

/** The feed is polled this often besides the doorbell (a NOTIFY is lost while a listener reconnects). */
const FEED_POLL_MS = 250
/** Lease sweep period (and the upper bound of how late a lease is removed). */
const SWEEP_MS = 1000
const SWEEP_MIN_MS = 20
/**
 * Feed rows older than this are deleted (by whichever node sweeps, at most once a minute); a node that has not
 * read the feed for half as long re-reads the whole zone instead of trusting its cursor.
 */
const FEED_RETENTION_MS = 3_600_000
const PRUNE_EVERY_MS = 60_000
const CONNECT_TIMEOUT_MS = 3000
/** A node whose heartbeat is older than this is no longer listed (it beats every sweep, about once a second). */
const LIVE_MS = 5000
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

export class PgStore implements ZoneStore {
  readonly zone: string
  readonly index: ZoneIndex
  readonly leases = new LeaseTable<Rec>()
  readonly leaseExpiry = 'store' as const
  readonly nodeId: string
  readonly #clock: Clock
  readonly #log: Logger
  readonly #pool: pg.Pool
  readonly #doorbell: Doorbell
  readonly #listeners = new Set<ChangeListener>()
  readonly #accountListeners = new Set<() => void>()
  readonly #peerListeners = new Set<() => void>()
  #peers: PeerNode[] = []
  #peersKey = ''
  #nodeInfo: Record<string, unknown>
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
  #feedFailing = false
  /** Successful commits of this node, and for each RRset the commit count at its last own commit. */
  #commits = 0
  readonly #ownAt = new Map<string, number>()
  /** RRsets whose re-read raced a commit of this node: re-read at the next feed read. */
  readonly #pending = new Map<string, [string, number]>()
  #readAgain = false
  #closed = false
  #pollTimer: TimerHandle | undefined
  #sweepTimer: TimerHandle | undefined
  /** Monotonic time of the last successful feed read, and of the last prune. */
  #feedReadAt = 0
  #prunedAt = -Infinity
  /** Counters for metrics and tests. */
  readonly stats = { feedRows: 0, feedErrors: 0, reconciled: 0, expired: 0, commitErrors: 0 }

  private constructor(deps: { clock: Clock; log?: Logger }, opts: PgStoreOptions) {
    this.#clock = deps.clock
    this.#log = deps.log ?? nullLogger
    this.#nodeInfo = opts.nodeInfo ?? {}
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
    // An idle connection dying (the database restarting) is reported here; the pool replaces it on next use.
    this.#pool.on('error', (e) => this.#log.warn('pg.idle_error', { err: e.message }))
    this.#doorbell = new Doorbell(
      { log: this.#log, onRing: () => this.kick() },
      { url: opts.url, nodeId: this.nodeId, connect: base },
    )
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

  /** The other nodes whose heartbeat is recent, as they describe themselves (setNodeInfo). */
  peers(): readonly PeerNode[] {
    return this.#peers
  }

  /** Called when the set of live peers changed. */
  onPeers(fn: () => void): () => void {
    this.#peerListeners.add(fn)
    return () => this.#peerListeners.delete(fn)
  }

  /** What this node tells the others about itself (its server name, addresses, ports); beats at once. */
  setNodeInfo(info: PeerNode & Record<string, unknown>): void {
    this.#nodeInfo = { ...this.#nodeInfo, ...info }
    this.#heartbeat().catch((e) => this.#log.warn('pg.heartbeat_failed', { err: (e as Error).message }))
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
    await this.#doorbell.close()
    await this.#pool
      .query(`DELETE FROM ${SCHEMA}.node WHERE id = $1`, [this.nodeId])
      .catch(() => {})
      .then(() => this.#pool.end())
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
          await this.#readFeed()
        } while (this.#readAgain && !this.#closed)
        if (this.#feedFailing) {
          this.#feedFailing = false
          this.#log.info('pg.feed_resumed', { failures: this.stats.feedErrors })
        }
      } catch (e) {
        this.stats.feedErrors++
        // Once per outage, not at every poll (four a second).
        if (!this.#feedFailing && !this.#closed) this.#log.warn('pg.feed_failed', { err: (e as Error).message })
        this.#feedFailing = true
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
    this.#doorbell.start()
    const poll = (): void => {
      this.kick()
      this.#pollTimer = this.#clock.setTimeout(poll, FEED_POLL_MS)
    }
    this.#pollTimer = this.#clock.setTimeout(poll, FEED_POLL_MS)
    this.#armSweep(0)
  }

  /** Commits a write's operations (last one per row wins) and its change rows; sets the serial from their ids. */
  async #commit(ops: readonly SqlOp[]): Promise<void> {
    const { params: commitParams, touched } = commitParamsOf(ops, this.nodeId)
    let lastId: string | null
    try {
      // Named: prepared once per connection, not parsed and planned again for every batch.
      const r = await this.#pool.query<{ last: string | null }>({
        name: 'autotunnel_commit',
        text: COMMIT_SQL,
        values: commitParams,
      })
      lastId = r.rows[0]?.last ?? null
    } catch (e) {
      // The COMMIT may have happened (the connection died after it): the index is undone by the caller, so the
      // whole zone is re-read from the database on the next feed read.
      this.#resync = true
      this.stats.commitErrors++
      throw e
    }
    this.#commits++
    for (const [name, type] of touched) this.#ownAt.set(`${name}\u0000${type}`, this.#commits)
    if (lastId !== null && BigInt(lastId) > this.#lastId) {
      this.#lastId = BigInt(lastId)
      this.#serial = serialFromChangeId(this.#lastId)
    }
    this.#doorbell.ring()
  }

  /**
   * Reads the feed from the cursor to its end. The reads run beside this node's own commits (only applying them to
   * the index is exclusive): an RRset this node committed after a read began is not applied from that read (it could
   * undo the commit's edits) but re-read at the next feed read.
   */
  async #readFeed(): Promise<void> {
    if (this.#clock.monotonic() - this.#feedReadAt > FEED_RETENTION_MS / 2) this.#resync = true
    if (this.#resync)
      await this.#exclusive(async () => {
        const changes = await this.#reconcile(undefined)
        this.#resync = false
        this.#log.info('store.resynced', { changed: changes.length })
        if (changes.length) this.#emit(changes)
      })
    for (;;) {
      const start = this.#commits
      const rows = (
        await this.#pool.query<FeedRow>({
          name: 'autotunnel_feed',
          text: FEED_SQL,
          values: [this.#cursor.xid, this.#cursor.id],
        })
      ).rows
      this.#feedReadAt = this.#clock.monotonic()
      if (rows.length === 0 && this.#pending.size === 0) return
      this.stats.feedRows += rows.length
      const keys = new Map(this.#pending)
      this.#pending.clear()
      let accounts = false
      let lastId = this.#lastId
      for (const r of rows) {
        const id = BigInt(r.id)
        if (id > lastId) lastId = id
        if (r.kind === 'account') accounts = true
        else if (r.node !== this.nodeId) keys.set(`${r.name}\u0000${r.type}`, [r.name, r.type])
      }
      const dbRows = keys.size ? await this.#rowsOf([...keys.values()]) : []
      const accountList = accounts ? await pgListAccounts(this.#pool) : undefined
      await this.#exclusive(async () => {
        const fresh: [string, number][] = []
        for (const [k, key] of keys)
          if ((this.#ownAt.get(k) ?? 0) > start) this.#pending.set(k, key)
          else fresh.push(key)
        for (const [k, at] of this.#ownAt) if (at <= start) this.#ownAt.delete(k)
        const changes = fresh.length ? this.#applyRows(fresh, dbRows) : []
        if (accountList) {
          this.#accounts = accountList
          this.#accountsChanged = true
        }
        const lastRow = rows[rows.length - 1]
        if (lastRow) this.#cursor = { xid: lastRow.xid, id: lastRow.id }
        if (lastId > this.#lastId) this.#lastId = lastId
        this.#serial = serialFromChangeId(this.#lastId)
        if (changes.length) this.#emit(changes)
        if (accountList)
          for (const fn of this.#accountListeners) {
            try {
              fn()
            } catch (e) {
              this.#log.error('store.account_listener_failed', { err: String(e) })
            }
          }
      })
      if (rows.length < FEED_PAGE) return
    }
  }

  async #rowsOf(keys: [string, number][]): Promise<Row[]> {
    return (
      await this.#pool.query<Row>({
        name: 'autotunnel_rrsets',
        text: `SELECT ${COLUMNS} FROM ${SCHEMA}.rr WHERE (name, type) IN (SELECT * FROM unnest($1::text[], $2::int[]))`,
        values: [keys.map((k) => k[0]), keys.map((k) => k[1])],
      })
    ).rows
  }

  /**
   * Makes the index hold what the database holds for the RRsets `keys` (every RRset when undefined), and returns
   * the differences as changes for the watchers.
   */
  async #reconcile(keys: [string, number][] | undefined): Promise<RRsetChange[]> {
    const rows = keys
      ? await this.#rowsOf(keys)
      : (await this.#pool.query<Row>(`SELECT ${COLUMNS} FROM ${SCHEMA}.rr`)).rows
    return this.#applyRows(keys, rows)
  }

  /** Applies `rows` (what the database holds for `keys`, or for every RRset when undefined) to the index. */
  #applyRows(keys: [string, number][] | undefined, rows: Row[]): RRsetChange[] {
    const byKey = new Map<string, { name: string; type: number; rows: Row[] }>()
    const slot = (name: string, type: number): { name: string; type: number; rows: Row[] } | undefined => {
      const k = `${name}\u0000${type}`
      let e = byKey.get(k)
      if (!e && !keys) byKey.set(k, (e = { name, type, rows: [] }))
      return e
    }
    if (keys) for (const [name, type] of keys) byKey.set(`${name}\u0000${type}`, { name, type, rows: [] })
    else for (const rec of this.index.records()) slot(rec.rr.name, rec.rr.type)
    // Rows of RRsets not asked for (a key deferred as pending) are left for their own re-read.
    for (const r of rows) slot(r.name, r.type)?.rows.push(r)
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
      this.#doorbell.ring()
      this.kick()
    }
    return n >= SWEEP_BATCH
  }

  /** Records this node as alive and reads which others are (by the database's clock). */
  async #heartbeat(): Promise<void> {
    await this.#pool.query(
      `INSERT INTO ${SCHEMA}.node (id, info) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET seen = clock_timestamp(), info = excluded.info`,
      [this.nodeId, JSON.stringify(this.#nodeInfo)],
    )
    const rows = (
      await this.#pool.query<{ info: Record<string, unknown> }>(
        `SELECT info FROM ${SCHEMA}.node WHERE id <> $1 AND seen > clock_timestamp() - make_interval(secs => $2)
         ORDER BY id`,
        [this.nodeId, LIVE_MS / 1000],
      )
    ).rows
    const peers: PeerNode[] = []
    for (const { info: i } of rows)
      if (
        typeof i.nsName === 'string' &&
        Array.isArray(i.nsAddrs) &&
        i.nsAddrs.every((a) => typeof a === 'string') &&
        typeof i.dnsPort === 'number'
      )
        peers.push({
          nsName: i.nsName,
          nsAddrs: i.nsAddrs as string[],
          dnsPort: i.dnsPort,
          tlsPort: typeof i.tlsPort === 'number' ? i.tlsPort : undefined,
        })
    const key = JSON.stringify(peers)
    if (key === this.#peersKey) return
    this.#peersKey = key
    this.#peers = peers
    this.#log.info('store.peers', { peers: peers.map((p) => `${p.nsName}:${p.dnsPort}`) })
    for (const fn of this.#peerListeners) fn()
  }
}
