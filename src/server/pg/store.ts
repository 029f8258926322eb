// The zone store on a PostgreSQL database shared by any number of server nodes (docs/cluster.md).
//
// Every node keeps the whole zone in memory (ZoneIndex, as on SQLite) and answers from it; the database is the
// truth and the way nodes hear of each other's changes:
// - A write edits the index at once through a ZoneTx (zone-tx.ts), then commits its rows and one change-feed row
//   per RRset touched in ONE statement (data-modifying CTEs: one round trip, one transaction, one fsync for the
//   whole group-commit batch). The update queue answers after that COMMIT; a failed COMMIT undoes the index.
// - The change feed (autotunnel.change) is read by cursor on (xid, id), only below the oldest running
//   transaction (pg_snapshot_xmin), so a transaction that commits after a later-numbered one is never skipped.
//   The feed says which RRsets changed; the same statement returns those RRsets' current rows, and the node
//   applies the difference to its index and its LLQ/Push watchers (reconcile.ts). Re-reading (rather than replaying
//   row operations) makes the result the database's current state whatever order transactions committed in. A
//   node skips the RRsets of its own rows (its index has them already); feed application and the node's own
//   commits never overlap (#exclusive), so a re-read can never undo an edit of the node's own that is still
//   committing. Reads start at most every FEED_GAP_MS, however often the doorbell rings.
// - NOTIFY is only a doorbell, sent after the data COMMIT on its own connection with synchronous_commit off (a
//   notifying COMMIT takes a database-wide lock); the feed is also polled, so a lost NOTIFY costs latency only.
// - Lease expiry runs in the store (sweep.ts), not in DnsService: every node sweeps rows whose expires_ms (the
//   database's clock) has passed with DELETE ... FOR UPDATE SKIP LOCKED, writing the 'expire' feed rows in the same
//   statement, so a lease expires exactly once across the cluster, whichever nodes are up. The heartbeats that
//   list the live nodes are in nodes.ts.
// - The zone serial is the last change-feed id the node has seen (modulo 2^32): no row every update fights over.
// - A batch with an UPDATE with prerequisites or near its quota locks its accounts across the nodes and re-reads its
//   names first, in its transaction (consistent.ts): prerequisites and quotas hold across the cluster.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Clock, TimerHandle } from '../../io/clock.js'
import { type Logger, nullLogger } from '../../io/log.js'
import type { Account } from '../accounts.js'
import type { PeerNode } from '../config.js'
import { StoreError } from '../db.js'
import { LeaseTable } from '../lease-table.js'
import { isAtOrBelow, type Rec, ZoneIndex } from '../zone-index.js'
import {
  beginZoneTx,
  ChangeFanout,
  type ChangeListener,
  type ConsistentRead,
  type RRsetChange,
  type SqlOp,
  type WriteOptions,
  type ZoneStore,
  type ZoneTx,
} from '../zone-tx.js'
import { pgListAccounts } from './accounts.js'
import { lockAndRead } from './consistent.js'
import { Doorbell } from './doorbell.js'
import { loadZone } from './load.js'
import { NodeHeartbeat } from './nodes.js'
import { applyRows } from './reconcile.js'
import { SCHEMA, serialFromChangeId } from './schema.js'
import { COLUMNS, COMMIT_SQL, commitParamsOf, FEED_PAGE, FEED_SQL, type FeedReadRow, type Row } from './sql.js'
import { FEED_RETENTION_MS, LeaseSweeper } from './sweep.js'

/** The feed is polled this often besides the doorbell (a NOTIFY is lost while a listener reconnects). */
const FEED_POLL_MS = 250
/**
 * At most one feed read starts in this time: under load the doorbell rings after every batch of every other node,
 * and reading once per ring costs the database and the node a round trip each; rings within the gap share one
 * read. The gap is added to the cross-node latency only when another read ran just before.
 */
const FEED_GAP_MS = 5
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

export class PgStore implements ZoneStore {
  readonly zone: string
  readonly index: ZoneIndex
  readonly leases = new LeaseTable<Rec>()
  readonly leaseExpiry = 'store' as const
  /** Other nodes write the same database: writes that depend on their data ask for WriteOptions.consistent. */
  readonly shared = true
  readonly nodeId: string
  readonly #clock: Clock
  readonly #log: Logger
  readonly #pool: pg.Pool
  readonly #doorbell: Doorbell
  readonly #nodes: NodeHeartbeat
  readonly #fanout: ChangeFanout
  readonly #accountListeners = new Set<() => void>()
  #tail: Promise<unknown> = Promise.resolve()
  #cursor = { xid: '0', id: '-1' }
  #lastId = 0n
  #serial = 1
  #accounts: Account[] = []
  #accountsChanged = false
  /** A COMMIT failed with an unknown outcome: re-read the whole zone before trusting the index again. */
  #resync = false
  #reading = false
  /** Monotonic time the last feed read started, and the timer of a read waiting for FEED_GAP_MS. */
  #readStartedAt = -Infinity
  #gapTimer: TimerHandle | undefined
  #feedFailing = false
  /**
   * Successful commits of this node and re-reads of a consistent write (each makes the index newer than a feed read
   * begun before it), and for each RRset the count at its last own commit or re-read.
   */
  #commits = 0
  readonly #ownAt = new Map<string, number>()
  /** RRsets whose re-read raced a commit of this node: re-read at the next feed read. */
  readonly #pending = new Map<string, [string, number]>()
  #readAgain = false
  #closed = false
  #pollTimer: TimerHandle | undefined
  readonly #sweeper: LeaseSweeper
  /** Monotonic time of the last successful feed read, and of the last prune. */
  #feedReadAt = 0
  /** Counters for metrics and tests. */
  readonly stats = { feedReads: 0, feedRows: 0, feedErrors: 0, reconciled: 0, expired: 0, commitErrors: 0 }

  private constructor(deps: { clock: Clock; log?: Logger }, opts: PgStoreOptions) {
    this.#clock = deps.clock
    this.#log = deps.log ?? nullLogger
    this.#fanout = new ChangeFanout(this.#log)
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
    this.#nodes = new NodeHeartbeat(
      { pool: this.#pool, log: this.#log },
      { nodeId: this.nodeId, info: opts.nodeInfo ?? {} },
    )
    this.#sweeper = new LeaseSweeper({
      pool: this.#pool,
      clock: this.#clock,
      log: this.#log,
      nodes: this.#nodes,
      nextExpiryMs: () => this.leases.nextExpiryMs(),
      onExpired: (n) => {
        this.stats.expired += n
        this.#log.info('lease.expired', { records: n, node: this.nodeId })
        this.#doorbell.ring()
        this.kick()
      },
    })
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
    return this.#nodes.peers
  }

  /** Called when the set of live peers changed. */
  onPeers(fn: () => void): () => void {
    return this.#nodes.onPeers(fn)
  }

  /** What this node tells the others about itself (its server name, addresses, ports); beats at once. */
  setNodeInfo(info: PeerNode & Record<string, unknown>): void {
    this.#nodes.setInfo(info)
    this.#nodes.beat().catch((e) => this.#log.warn('pg.heartbeat_failed', { err: (e as Error).message }))
  }

  /** Called after the account list was re-read because some node or the CLI changed it. */
  onAccounts(fn: () => void): () => void {
    this.#accountListeners.add(fn)
    return () => this.#accountListeners.delete(fn)
  }

  onChange(fn: ChangeListener): () => void {
    return this.#fanout.on(fn)
  }

  recordsAtOrBelow(name: string): Rec[] {
    const out: Rec[] = []
    for (const rec of this.index.records()) if (isAtOrBelow(rec.rr.name, name)) out.push(rec)
    return out
  }

  /**
   * See ZoneStore.write: resolves after the COMMIT; the index is restored if it fails. With `consistent`, the batch
   * runs in a transaction that holds the accounts' locks, against the index brought up to date for the names it
   * depends on (consistent.ts).
   */
  write<T>(fn: (tx: ZoneTx) => T, opts: WriteOptions = {}): Promise<T> {
    return this.#exclusive(async () => {
      if (this.#closed) throw new StoreError('store closed')
      const held = opts.consistent?.length ? await this.#lockAndRead(opts.consistent) : undefined
      let ok = false
      try {
        const w = beginZoneTx(this.index, this.leases, this.#serial, this.#clock.now() + this.#sweeper.offsetMs)
        let result: T
        try {
          result = fn(w.tx)
          if (w.ops.length || held) await this.#commit(w.ops, held)
        } catch (e) {
          w.rollback()
          throw e
        }
        this.#fanout.committed(w.changes(), this.#serial, opts.deferChanges)
        ok = true
        return result
      } finally {
        // A failed transaction's connection is discarded rather than rolled back (it may be the cause).
        held?.release(ok ? undefined : true)
      }
    })
  }

  /** Opens a consistent write's transaction, the index brought up to date for its names (consistent.ts). */
  async #lockAndRead(reads: readonly ConsistentRead[]): Promise<pg.PoolClient> {
    const trusted = !this.#resync && this.#clock.monotonic() - this.#feedReadAt < FEED_RETENTION_MS / 2
    const at = { cursor: this.#cursor, trusted, pending: this.#pending.values() }
    const { client, keys, changes, rrsets } = await lockAndRead(this.#pool, this.index, this.leases, reads, at)
    this.stats.reconciled += rrsets
    // As after a commit, a feed read begun before is not applied over these RRsets; their watchers hear of them now.
    this.#commits++
    for (const [name, type] of keys) this.#ownAt.set(`${name}\u0000${type}`, this.#commits)
    if (changes.length) this.#fanout.emit(changes, this.#serial)
    return client
  }

  emitDeferred(): void {
    this.#fanout.emitDeferred()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#clock.clearTimeout(this.#pollTimer)
    this.#sweeper.close()
    // Writes queued before close (the update queue's last batch) still commit.
    await this.#exclusive(async () => {}).catch(() => {})
    this.#closed = true
    this.#clock.clearTimeout(this.#pollTimer)
    this.#sweeper.close()
    this.#clock.clearTimeout(this.#gapTimer)
    await this.#doorbell.close()
    await this.#nodes
      .remove()
      .catch(() => {})
      .then(() => this.#pool.end())
      .catch(() => {})
    this.#fanout.clear()
  }

  /** Reads the feed soon (the doorbell rang, a poll, tests): now, or FEED_GAP_MS after the last read began. */
  kick(): void {
    if (this.#closed) return
    if (this.#reading || this.#gapTimer) {
      this.#readAgain = true
      return
    }
    const wait = this.#readStartedAt + FEED_GAP_MS - this.#clock.monotonic()
    if (wait > 0) {
      this.#gapTimer = this.#clock.setTimeout(() => {
        this.#gapTimer = undefined
        this.#startRead()
      }, wait)
      return
    }
    this.#startRead()
  }

  #startRead(): void {
    if (this.#closed) return
    this.#reading = true
    this.#readAgain = false
    this.#readStartedAt = this.#clock.monotonic()
    void (async () => {
      try {
        await this.#readFeed()
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
        if (this.#readAgain) this.kick()
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
      const loaded = await loadZone(c, this.zone, this.#clock, this.index, this.leases)
      this.#sweeper.offsetMs = loaded.offsetMs
      this.#accounts = loaded.accounts
      // Everything committed below xmin is in the snapshot; rows from xmin on are read (again) from the feed.
      this.#cursor = { xid: loaded.xmin, id: '-1' }
      this.#feedReadAt = this.#clock.monotonic()
      this.#lastId = loaded.lastId
      this.#serial = serialFromChangeId(this.#lastId)
    } finally {
      c.release()
    }
    await this.#nodes.beat()
    this.#log.info('store.loaded', {
      zone: this.zone,
      store: 'postgres',
      node: this.nodeId,
      records: this.index.recordCount,
      leases: this.leases.size,
      accounts: this.#accounts.length,
      serial: this.#serial,
      clockOffsetMs: Math.round(this.#sweeper.offsetMs),
    })
    this.#doorbell.start()
    const poll = (): void => {
      this.kick()
      this.#pollTimer = this.#clock.setTimeout(poll, FEED_POLL_MS)
    }
    this.#pollTimer = this.#clock.setTimeout(poll, FEED_POLL_MS)
    this.#sweeper.start()
  }

  /**
   * Commits a write's operations (last one per row wins) and its change rows; sets the serial from their ids. With
   * `held`, in the transaction open on that connection (consistent.ts), then COMMIT; else as one statement.
   */
  async #commit(ops: readonly SqlOp[], held?: pg.PoolClient): Promise<void> {
    const { params: commitParams, touched } = commitParamsOf(ops, this.nodeId)
    let lastId: string | null = null
    try {
      // Named: prepared once per connection, not parsed and planned again for every batch.
      const q = { name: 'autotunnel_commit', text: COMMIT_SQL, values: commitParams }
      if (!held) lastId = (await this.#pool.query<{ last: string | null }>(q)).rows[0]?.last ?? null
      else {
        if (ops.length) lastId = (await held.query<{ last: string | null }>(q)).rows[0]?.last ?? null
        await held.query('COMMIT')
      }
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
    if (ops.length) this.#doorbell.ring()
  }

  /**
   * Reads the feed from the cursor to its end, with the current rows of the RRsets other nodes changed (one
   * statement per page). The reads run beside this node's own commits (only applying them to the index is
   * exclusive): an RRset this node committed after a read began is not applied from that read (it could undo the
   * commit's edits) but re-read at the next feed read.
   */
  async #readFeed(): Promise<void> {
    if (this.#clock.monotonic() - this.#feedReadAt > FEED_RETENTION_MS / 2) this.#resync = true
    if (this.#resync)
      await this.#exclusive(async () => {
        const rows = (await this.#pool.query<Row>(`SELECT ${COLUMNS} FROM ${SCHEMA}.rr`)).rows
        const { changes, rrsets } = applyRows(this.index, this.leases, undefined, rows)
        this.stats.reconciled += rrsets
        this.#resync = false
        this.#log.info('store.resynced', { changed: changes.length })
        if (changes.length) this.#fanout.emit(changes, this.#serial)
      })
    for (;;) {
      const start = this.#commits
      const asked = [...this.#pending]
      this.stats.feedReads++
      const all = (
        await this.#pool.query<FeedReadRow>({
          name: 'autotunnel_feed',
          text: FEED_SQL,
          values: [
            this.#cursor.xid,
            this.#cursor.id,
            this.nodeId,
            asked.map(([, k]) => k[0]),
            asked.map(([, k]) => k[1]),
          ],
        })
      ).rows
      this.#feedReadAt = this.#clock.monotonic()
      const records: Row[] = []
      const keys = new Map(asked)
      let accounts = false
      let feedRows = 0
      let last: { xid: bigint; id: bigint } | undefined
      let lastId = this.#lastId
      for (const r of all) {
        if (r.fid === null) {
          records.push(r)
          continue
        }
        feedRows++
        const id = BigInt(r.fid)
        const xid = BigInt(r.xid!)
        if (id > lastId) lastId = id
        // The rows of one read are not ordered (a UNION): the cursor moves to the greatest (xid, id).
        if (!last || xid > last.xid || (xid === last.xid && id > last.id)) last = { xid, id }
        if (r.kind === 'account') accounts = true
        else if (r.node !== this.nodeId) keys.set(`${r.name}\u0000${r.type}`, [r.name, r.type])
      }
      if (feedRows === 0 && asked.length === 0) return
      this.stats.feedRows += feedRows
      const accountList = accounts ? await pgListAccounts(this.#pool) : undefined
      await this.#exclusive(async () => {
        for (const [k] of asked) this.#pending.delete(k)
        const fresh: [string, number][] = []
        for (const [k, key] of keys)
          if ((this.#ownAt.get(k) ?? 0) > start) this.#pending.set(k, key)
          else fresh.push(key)
        for (const [k, at] of this.#ownAt) if (at <= start) this.#ownAt.delete(k)
        let changes: RRsetChange[] = []
        if (fresh.length) {
          const applied = applyRows(this.index, this.leases, fresh, records)
          changes = applied.changes
          this.stats.reconciled += applied.rrsets
        }
        if (accountList) {
          this.#accounts = accountList
          this.#accountsChanged = true
        }
        if (last) this.#cursor = { xid: String(last.xid), id: String(last.id) }
        if (lastId > this.#lastId) this.#lastId = lastId
        this.#serial = serialFromChangeId(this.#lastId)
        if (changes.length) this.#fanout.emit(changes, this.#serial)
        if (accountList)
          for (const fn of this.#accountListeners) {
            try {
              fn()
            } catch (e) {
              this.#log.error('store.account_listener_failed', { err: String(e) })
            }
          }
      })
      if (feedRows < FEED_PAGE) return
    }
  }
}
