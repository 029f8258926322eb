// The zone store on a PostgreSQL database shared by any number of server nodes. The design, and why, is
// docs/cluster.md ("Design"); in short:
// - Every node keeps the whole zone in memory (ZoneIndex) and answers from it; the database is the truth and the
//   only channel between nodes.
// - A write edits the index (zone-tx.ts), then commits its rows and one change-feed row per RRset touched in ONE
//   statement, which also reads the feed (sql.ts); the update queue answers after that COMMIT, and a failed COMMIT
//   undoes the index.
// - The feed is read by (xid, id) below pg_snapshot_xmin, so a late-committing transaction is never skipped; it
//   names RRsets, whose current rows come in the same statement and are applied to the index and the watchers
//   (reconcile.ts). A node skips its own RRsets; applying and its own commits never overlap (#exclusive); a read is
//   applied only if no other was applied since it was sent. When reads start: feed-schedule.ts.
// - NOTIFY is only a doorbell, after COMMIT, on its own connection (doorbell.ts); the feed is also polled.
// - Leases expire by the database's clock, exactly once across the cluster (sweep.ts); heartbeats in nodes.ts.
// - The zone serial is the last change-feed id the node has seen: no row every update fights over.
// - UPDATEs with prerequisites or near their quota lock their accounts and re-read their names in their
//   transaction (consistent.ts); connections go to the writable server of the URL's list (primary.ts).
import { randomBytes } from 'node:crypto'
import type pg from 'pg'
import { accountKeyName } from '../../dns/account-key.js'
import type { Clock, TimerHandle } from '../../io/clock.js'
import { type Logger, nullLogger } from '../../io/log.js'
import type { Account } from '../accounts.js'
import type { PeerNode } from '../config.js'
import { StoreError } from '../db.js'
import { LeaseTable } from '../lease-table.js'
import type { RevokedHostList } from '../revoked-hosts.js'
import { isAtOrBelow, labelBelow, type Rec, ZoneIndex } from '../zone-index.js'
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
import { LOCK_SQL, lockAndRead } from './consistent.js'
import { Doorbell } from './doorbell.js'
import { FeedSchedule } from './feed-schedule.js'
import { loadZone } from './load.js'
import { NodeHeartbeat } from './nodes.js'
import { nodePrimary, type PgPrimary } from './primary.js'
import { applyRows } from './reconcile.js'
import { SCHEMA, serialFromChangeId } from './schema.js'
import {
  COLUMNS,
  COMMIT_FEED_SQL,
  commitParamsOf,
  FEED_PAGE,
  FEED_SQL,
  type FeedRead,
  type FeedReadRow,
  parseFeedPage,
  type Row,
} from './sql.js'
import { PgSsoState, pgListRevoked } from './sso.js'
import { FEED_RETENTION_MS, LeaseSweeper } from './sweep.js'

/** What an 'account' row of the feed makes a node read again. */
interface AccountList {
  readonly accounts: Account[]
  readonly revoked: Map<string, Set<string>>
}
const NO_HOSTS: ReadonlySet<string> = new Set()

/** The feed is polled this often besides the doorbell (a NOTIFY is lost while a listener reconnects). */
const FEED_POLL_MS = 250
/** At most one feed read of its own starts in this time, however often the doorbell rings (feed-schedule.ts). */
const FEED_GAP_MS = 5
/** While this node commits, a ring waits this long for its next commit (which reads the feed) before a read. */
const BUSY_READ_WAIT_MS = 10

export interface PgStoreOptions {
  /** postgres://USER:PASSWORD@HOST:PORT/DB, or several HOST:PORTs (a primary and its standbys; hosts.ts). */
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
  readonly #primary: PgPrimary
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
  /** Each account's revoked hosts, read with the accounts (revoked-hosts.ts asks through revokedHosts). */
  #revoked = new Map<string, Set<string>>()
  /** A COMMIT failed with an unknown outcome: re-read the whole zone before trusting the index again. */
  #resync = false
  #feedFailing = false
  /**
   * Successful commits of this node and re-reads of a consistent write (each makes the index newer than a feed read
   * begun before it), and for each RRset the count at its last own commit or re-read.
   */
  #commits = 0
  readonly #ownAt = new Map<string, number>()
  /** The same for the names whose every RRset this node cleared (ZoneTx.clear with type ANY). */
  readonly #ownNames = new Map<string, number>()
  /** RRsets whose re-read raced a commit of this node: re-read at the next feed read. */
  readonly #pending = new Map<string, [string, number]>()
  /** Feed reads applied so far: a read is applied only if none was since it was sent. */
  #applied = 0
  #closed = false
  #pollTimer: TimerHandle | undefined
  readonly #sweeper: LeaseSweeper
  readonly #schedule: FeedSchedule
  /** Monotonic time of the last successful feed read, and of the last prune. */
  #feedReadAt = 0
  /** Counters for metrics and tests. */
  readonly stats = {
    feedReads: 0,
    feedRows: 0,
    feedErrors: 0,
    reconciled: 0,
    expired: 0,
    commitErrors: 0,
    /** Writes without prerequisites that found an account locked by a consistent write and waited for it. */
    lockWaits: 0,
    /** Writes without prerequisites that delete, and so took their accounts' locks before their statement. */
    lockedFirst: 0,
  }

  private constructor(deps: { clock: Clock; log?: Logger }, opts: PgStoreOptions) {
    this.#clock = deps.clock
    this.#log = deps.log ?? nullLogger
    this.#fanout = new ChangeFanout(this.#log)
    this.zone = opts.zone
    this.index = new ZoneIndex(opts.zone)
    this.nodeId = opts.nodeId ?? randomBytes(8).toString('hex')
    const primary = nodePrimary(this.#log, opts.url, this.nodeId)
    this.#primary = primary
    this.#pool = primary.pool({ max: 4 })
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
    this.#schedule = new FeedSchedule(
      { clock: this.#clock, read: () => this.#read() },
      { gapMs: FEED_GAP_MS, busyWaitMs: BUSY_READ_WAIT_MS },
    )
    this.#doorbell = new Doorbell({ log: this.#log, onRing: () => this.kick() }, { primary, nodeId: this.nodeId })
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

  /** The revoked hosts of every account as last read with the accounts: the UPDATE path's list (no round trip). */
  readonly revokedHosts: RevokedHostList = {
    of: (user) => this.#revoked.get(user.toLowerCase()) ?? NO_HOSTS,
  }

  /**
   * The SSO state shared by the nodes (pg/sso.ts) on this store's pool; a mark made through it is in force on this
   * node's UPDATE path at once, on the others with the feed. `legacyDir`: PgSsoState's.
   */
  ssoState(legacyDir?: string): PgSsoState {
    return new PgSsoState(
      { pool: this.#pool, log: this.#log, now: () => this.#clock.now() },
      {
        legacyDir,
        onRevoked: (user, host, revoked) => {
          const next = new Set(this.#revoked.get(user))
          if (revoked) next.add(host)
          else next.delete(host)
          this.#revoked.set(user, next)
          this.kick()
        },
      },
    )
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
      const held = opts.consistent?.length ? await this.#lockAndRead(opts.consistent, opts.accounts ?? []) : undefined
      const locked = held && new Set([...opts.consistent!.map((r) => r.domain), ...(opts.accounts ?? [])])
      let ok = false
      let result!: T
      let read: FeedRead | undefined
      try {
        const w = beginZoneTx(this.index, this.leases, this.#serial, this.#clock.now() + this.#sweeper.offsetMs)
        try {
          result = fn(w.tx)
          if (w.ops.length || held) read = await this.#commit(w.ops, held, locked)
        } catch (e) {
          w.rollback()
          throw e
        }
        this.#fanout.committed(w.changes(), this.#serial, opts.deferChanges)
        ok = true
      } finally {
        // A failed transaction's connection is discarded rather than rolled back (it may be the cause).
        held?.release(ok ? undefined : true)
      }
      if (read) {
        let applied = false
        try {
          applied = this.#apply(read, undefined)
        } catch (e) {
          // The write is durable and answered as such; the index is re-read whole rather than trusted.
          this.#log.error('store.feed_apply_failed', { err: String(e) })
          this.#resync = true
        }
        // Only an applied read serves the kicks before it: one that was not must not cancel the read they wait for.
        if (applied) this.#schedule.served(read.sentAt)
        // It needs the account list, which only a read of its own fetches: that read starts now, not with the next
        // commit (whose read could not apply it either: under a steady stream of commits the accounts, the revoked
        // hosts and every RRset behind them would wait until the stream paused).
        if (!applied && read.page.accounts) this.#schedule.readNow()
        // Not applied (another read was applied meanwhile), or more to read: a read follows, soon.
        else if (!applied || read.page.n >= FEED_PAGE) this.kick()
      }
      return result
    })
  }

  /** Opens a consistent write's transaction, the index brought up to date for its names (consistent.ts). */
  async #lockAndRead(reads: readonly ConsistentRead[], accounts: readonly string[]): Promise<pg.PoolClient> {
    const trusted = !this.#resync && this.#clock.monotonic() - this.#feedReadAt < FEED_RETENTION_MS / 2
    const at = { cursor: this.#cursor, trusted, pending: this.#pending.values() }
    const { client, keys, changes, rrsets } = await lockAndRead(
      this.#pool,
      this.index,
      this.leases,
      reads,
      accounts,
      at,
    )
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
    this.#schedule.close()
    await this.#doorbell.close()
    await this.#nodes
      .remove()
      .catch(() => {})
      .then(() => this.#pool.end())
      .catch(() => {})
    this.#fanout.clear()
  }

  /** Reads the feed soon (the doorbell rang, a poll, tests): see FeedSchedule. */
  kick(): void {
    if (!this.#closed) this.#schedule.kick()
  }

  /** One feed read to its end (FeedSchedule's read): errors are logged once per outage. */
  async #read(): Promise<void> {
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
    }
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
      this.#revoked = loaded.revoked
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
   * Commits a write's operations (last one per row wins) and its change rows, and reads the feed in the same
   * statement; sets the serial from the change rows' ids. Returns the read for write() to apply. With `held`, the
   * statement runs in the transaction open on that connection (a consistent write: consistent.ts), then COMMIT; a
   * consistent write without operations (its prerequisites failed) only commits and reads nothing.
   *
   * The statement takes the locks of the accounts it writes shared (sql.ts, WRITE_CTES); when one is held
   * exclusively by a consistent write in flight on any node, it writes nothing, and the write is committed again
   * in a transaction that waits for the locks before its statement starts (#commitLocked). A consistent write
   * holds them all already (lockAndRead; `locked`), and its statement takes none: a lock this transaction holds is
   * not taken again, because PostgreSQL refuses a try-lock that conflicts with a session waiting for the key even
   * when the conflicting lock is this transaction's own.
   */
  async #commit(
    ops: readonly SqlOp[],
    held?: pg.PoolClient,
    locked?: ReadonlySet<string>,
  ): Promise<FeedRead | undefined> {
    const { params: commitParams, touched, clears, clearedNames, deletes } = commitParamsOf(ops, this.nodeId)
    const accounts = this.#accountsOf([...touched.map(([name]) => name), ...clearedNames])
    // Not expected (the update queue names every account of its batch): nothing is sent, so nothing is committed.
    if (held && accounts.some((a) => !locked?.has(a))) throw new StoreError('an account of the write was not locked')
    const start = this.#commits
    const { cursor, applied } = { cursor: this.#cursor, applied: this.#applied }
    const asked = [...this.#pending]
    const sentAt = this.#clock.monotonic()
    let rows: FeedReadRow[] | undefined
    this.#schedule.committing = true
    try {
      // Named: prepared once per connection, not parsed and planned again for every batch.
      const q = (lock: readonly string[]): pg.QueryConfig => ({
        name: 'autotunnel_commit_feed',
        text: COMMIT_FEED_SQL,
        values: [
          ...commitParams,
          cursor.xid,
          cursor.id,
          asked.map(([, k]) => k[0]),
          asked.map(([, k]) => k[1]),
          lock,
          ...clears,
        ],
      })
      if (!held && deletes && accounts.length) {
        // A statement's deletions see its snapshot, taken when it starts, before its try-locks: a consistent write
        // that committed in between is ordered before this one by the locks, yet the records it added would
        // survive these deletions. Taking the locks first, in their own statement, closes that window; it costs
        // three round trips more, for batches that delete (an agent's first publication and its changes, not its
        // lease refreshes).
        this.stats.lockedFirst++
        rows = await this.#commitLocked(q([]), accounts)
      } else if (!held) {
        rows = (await this.#primary.durableQuery<FeedReadRow>(this.#pool, q(accounts))).rows
        if (!lockedIn(rows)) {
          this.stats.lockWaits++
          rows = await this.#commitLocked(q([]), accounts)
        }
      } else {
        if (ops.length) rows = (await held.query<FeedReadRow>(q([]))).rows
        await this.#primary.durableOn(held, 'COMMIT')
      }
    } catch (e) {
      // The COMMIT may have happened (the connection died after it): the index is undone by the caller, so the
      // whole zone is re-read from the database on the next feed read.
      this.#resync = true
      this.stats.commitErrors++
      throw e
    } finally {
      this.#schedule.committing = false
    }
    this.#commits++
    for (const [name, type] of touched) this.#ownAt.set(`${name}\u0000${type}`, this.#commits)
    for (const name of clearedNames) this.#ownNames.set(name, this.#commits)
    const page = rows && parseFeedPage(rows, this.#lastId)
    if (page?.last !== undefined && page.last > this.#lastId) {
      this.#lastId = page.last
      this.#serial = serialFromChangeId(this.#lastId)
    }
    if (ops.length) this.#doorbell.ring()
    return page && { start, cursor, applied, asked, sentAt, page }
  }

  /**
   * A write whose statement found an account locked (#commit): BEGIN, the accounts' locks shared (waiting for the
   * consistent write holding one; no row is locked yet), then the statement, whose snapshot now includes that
   * write's rows, and COMMIT (`q` takes no lock again: #commit). On failure the connection is discarded (as
   * durableQuery does).
   */
  async #commitLocked(q: pg.QueryConfig, accounts: readonly string[]): Promise<FeedReadRow[]> {
    const c = await this.#pool.connect()
    try {
      await c.query('BEGIN')
      await c.query({ name: 'autotunnel_lock', text: LOCK_SQL, values: [[], accounts] })
      const rows = (await c.query<FeedReadRow>(q)).rows
      await this.#primary.durableOn(c, 'COMMIT')
      c.release()
      return rows
    } catch (e) {
      c.release(true)
      throw e
    }
  }

  /** The accounts (user.ZONE.) whose records a write changes: each name at or below one. */
  #accountsOf(names: readonly string[]): string[] {
    const out = new Set<string>()
    for (const name of names) {
      const label = labelBelow(name, this.zone)
      if (label !== undefined) out.add(accountKeyName(label, this.zone))
    }
    return [...out]
  }

  /**
   * Applies a feed page read from `read.cursor` (inside #exclusive): the RRsets other nodes changed, the cursor and
   * the serial. False, and nothing applied, when another read was applied since this one was sent (from another
   * snapshot, older or newer: applying this one after it could undo newer rows), when the zone is to be re-read
   * whole, or when the page names an account change and `accountList` was not read.
   */
  #apply(read: FeedRead, accountList: AccountList | undefined): boolean {
    const { page, start, asked } = read
    if (this.#applied !== read.applied || this.#resync || (page.accounts && !accountList)) return false
    this.#applied++
    this.#feedReadAt = this.#clock.monotonic()
    this.stats.feedRows += page.n
    for (const [k] of asked) this.#pending.delete(k)
    const fresh: [string, number][] = []
    for (const [k, key] of page.keys)
      if ((this.#ownAt.get(k) ?? 0) > start || (this.#ownNames.get(key[0]) ?? 0) > start) this.#pending.set(k, key)
      else fresh.push(key)
    for (const [k, at] of this.#ownAt) if (at <= start) this.#ownAt.delete(k)
    for (const [k, at] of this.#ownNames) if (at <= start) this.#ownNames.delete(k)
    let changes: RRsetChange[] = []
    if (fresh.length) {
      const applied = applyRows(this.index, this.leases, fresh, page.records)
      changes = applied.changes
      this.stats.reconciled += applied.rrsets
    }
    if (accountList) {
      this.#accounts = accountList.accounts
      this.#revoked = accountList.revoked
      this.#accountsChanged = true
      this.#log.info('store.accounts_reloaded', {
        accounts: accountList.accounts.length,
        revokedHosts: [...accountList.revoked.values()].reduce((n, h) => n + h.size, 0),
        readMs: Math.round(this.#clock.monotonic() - read.sentAt),
      })
    }
    if (page.cursor) this.#cursor = page.cursor
    if (page.maxId > this.#lastId) this.#lastId = page.maxId
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
    return true
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
      const { cursor, applied } = { cursor: this.#cursor, applied: this.#applied }
      const asked = [...this.#pending]
      const sentAt = this.#clock.monotonic()
      this.stats.feedReads++
      const rows = (
        await this.#pool.query<FeedReadRow>({
          name: 'autotunnel_feed',
          text: FEED_SQL,
          values: [cursor.xid, cursor.id, this.nodeId, asked.map(([, k]) => k[0]), asked.map(([, k]) => k[1])],
        })
      ).rows
      const page = parseFeedPage(rows, this.#lastId)
      if (page.n === 0 && asked.length === 0) return
      const accountList = page.accounts
        ? { accounts: await pgListAccounts(this.#pool), revoked: await pgListRevoked(this.#pool) }
        : undefined
      const read = { start, cursor, applied, asked, sentAt, page }
      // A commit's read was applied meanwhile (from a snapshot older or newer than this one): read again.
      if (!(await this.#exclusive(async () => this.#apply(read, accountList)))) {
        this.#schedule.again()
        return
      }
      if (page.n < FEED_PAGE) return
    }
  }
}

/** False when a COMMIT_FEED_SQL statement found an account's lock held elsewhere (and wrote nothing). */
function lockedIn(rows: readonly FeedReadRow[]): boolean {
  for (const r of rows) if (r.n !== null) return r.locked !== false
  return true
}
