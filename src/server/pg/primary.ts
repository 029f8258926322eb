// Which PostgreSQL server a node writes to (docs/cluster.md, Deploying). The store URL may list several servers,
// as libpq allows (hosts.ts): a primary and its standbys. Every connection the node opens (the pool, the doorbell,
// the LISTEN connection; the account CLI's pool) is a `PrimaryClient`, which connects to the server last found
// writable and checks that it still is (pg_is_in_recovery() and transaction_read_only, as libpq's
// target_session_attrs=read-write and =primary do). When that server goes away (a connection to it fails or
// breaks) the next connection first asks every listed server at once and takes the first writable one: after a
// standby is promoted the pool, the listener and the sweeper move to it by themselves, with no restart. Until
// one is found every connection fails at once (updates get SERVFAIL, queries are answered from memory) with a
// message naming each server's state and what to do.
//
// Two more guards: a statement unanswered for queryTimeoutMs makes the node ask its server on a new connection
// and, without an answer, close every connection to it (a machine gone silent: no reset arrives); and
// durableQuery() fails a COMMIT that PostgreSQL answered with a WARNING (its wait for the synchronous standby was
// cancelled: on the primary only).
//
// The pg client takes one host per connection, so host and port are set on each client before it connects (pg
// reads them only then, in Client._connect); the rest of the URL (user, password, database, TLS) is the same for
// every server and parsed by pg.
//
// Not decided here: which standby to promote and fencing the old primary (the failover tool's job). A node keeps
// writing to the server it found writable until a connection to it fails.
import pg from 'pg'
import { type Logger, nullLogger } from '../../io/log.js'
import { StoreError } from '../db.js'
import { hostLabel, type PgHost, parsePgUrl } from './hosts.js'

/** What libpq asks for target_session_attrs=read-write (transaction_read_only) and =primary (recovery). */
const CHECK_SQL = `SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') = 'on' AS read_only`
/**
 * A failed search is reused for this long: while no server is writable every write, feed poll, sweep and
 * listener attempt would otherwise open a connection to every listed server.
 */
const RETRY_MS = 100

/**
 * SQLSTATE of a plain WARNING (not translated, unlike the message). The one a COMMIT gets is PostgreSQL's
 * "canceling wait for synchronous replication" (the statement timeout ran out while the synchronous standby had
 * not confirmed): the transaction is committed on the primary only.
 */
const WARNING = '01000'
/** A probe (a connection and one statement) that takes longer counts as no answer. */
const PROBE_TIMEOUT_MS = 5000

type ClientInternals = {
  connectionParameters: { host: string; port: number }
  connection: { stream: { destroyed?: boolean; destroy(): void } }
}

/** Points an unconnected client at `h` (pg reads host and port when it connects). */
function aim(c: pg.Client, h: PgHost): void {
  const p = (c as unknown as ClientInternals).connectionParameters
  c.host = p.host = h.host
  if (h.port !== undefined) c.port = p.port = h.port
}

/** undefined when `c`'s server takes writes, else why not. */
async function notWritable(c: pg.ClientBase): Promise<string | undefined> {
  const r = (await c.query<{ standby: boolean; read_only: boolean }>(CHECK_SQL)).rows[0]
  if (r?.standby) return 'a standby (in recovery)'
  if (r?.read_only) return 'read-only (default_transaction_read_only is on)'
  return undefined
}

export class PgPrimary {
  /** The servers of the URL, in its order. */
  readonly hosts: readonly PgHost[]
  /** A pg.Client that connects to the writable server (for pg.Pool's `Client` and for single connections). */
  readonly Client: new (
    config?: pg.ClientConfig,
  ) => pg.Client
  readonly #base: pg.ClientConfig
  readonly #log: Logger
  readonly #now: () => number
  #current: PgHost | undefined
  #logged: PgHost | undefined
  #search: Promise<PgHost> | undefined
  #failure: { at: number; err: Error } | undefined
  readonly #queryTimeoutMs: number
  /** The connected clients and their server (to sever them all when it stops answering). */
  readonly #clients = new Map<pg.Client, PgHost>()
  readonly #warned = new WeakSet<pg.ClientBase>()

  /**
   * `config`: what every connection gets besides the URL (timeouts, application_name). `queryTimeoutMs`: a server
   * that has not answered a statement in this time is taken for gone (set it above the statement_timeout).
   */
  constructor(
    deps: { log?: Logger; now?: () => number },
    opts: { url: string; config?: pg.ClientConfig; queryTimeoutMs?: number },
  ) {
    const u = parsePgUrl(opts.url)
    this.hosts = u.hosts
    this.#base = { ...opts.config, connectionString: u.connectionString }
    this.#log = deps.log ?? nullLogger
    this.#now = deps.now ?? (() => performance.now())
    this.#queryTimeoutMs = opts.queryTimeoutMs ?? 0
    // One server: nothing to choose (pg connects where the URL says), only the check.
    if (this.hosts.length === 1) this.#current = this.hosts[0]
    const primary = this
    this.Client = class PrimaryClient extends pg.Client {
      constructor(config?: pg.ClientConfig) {
        super({ ...primary.#base, ...config })
        this.on('notice', (n) => {
          if (n.code === WARNING) primary.#warned.add(this)
        })
      }

      /** pg's query, watched (#watch) while it runs. */
      // biome-ignore lint/suspicious/noExplicitAny: passes pg's overloads through unchanged
      override query(...args: any[]): any {
        const h = primary.#clients.get(this)
        if (!primary.#queryTimeoutMs || h === undefined || typeof args[0]?.submit === 'function')
          return super.query(...(args as [string]))
        const finished = primary.#watch(h)
        const last = args.length - 1
        if (typeof args[last] === 'function') {
          const cb = args[last] as (...a: unknown[]) => void
          args[last] = (...a: unknown[]) => {
            finished()
            cb(...a)
          }
        }
        const r = super.query(...(args as [string]))
        if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(finished, finished)
        return r
      }

      override connect(): Promise<pg.Client>
      override connect(callback: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): void
      override connect(
        callback?: ((err: Error) => void) | ((err: null, c: pg.Client) => void),
      ): Promise<pg.Client> | undefined {
        const p = primary.#connect(this, () => super.connect()).then(() => this)
        if (!callback) return p
        p.then(
          (c) => (callback as (err: null, c: pg.Client) => void)(null, c),
          (e: Error) => (callback as (err: Error) => void)(e),
        )
        return undefined
      }
    }
  }

  /**
   * Runs a statement that commits (its own transaction) on a connection of `pool` and fails when PostgreSQL
   * answered it with a WARNING: the one a COMMIT gets is "canceling wait for synchronous replication" (the wait
   * for the synchronous standby was cancelled), and the transaction is then on the primary only. Not durable on two
   * machines, so not to be acknowledged. A connection whose statement failed is closed, not reused.
   */
  async durableQuery<R extends pg.QueryResultRow>(pool: pg.Pool, query: pg.QueryConfig): Promise<pg.QueryResult<R>> {
    const c = await pool.connect()
    let failed: Error | undefined
    try {
      return await this.durableOn<R>(c, query)
    } catch (e) {
      if (!(e instanceof StoreError)) failed = e as Error
      throw e
    } finally {
      c.release(failed)
    }
  }

  /**
   * durableQuery's check on a connection the caller holds (a transaction's COMMIT, consistent.ts): fails when
   * PostgreSQL answered the statement with a WARNING.
   */
  async durableOn<R extends pg.QueryResultRow>(
    c: pg.ClientBase,
    query: pg.QueryConfig | string,
  ): Promise<pg.QueryResult<R>> {
    this.#warned.delete(c)
    const r = await c.query<R>(query)
    if (this.#warned.delete(c)) {
      this.#log.warn('pg.commit_unconfirmed', {
        hint: 'the wait of a COMMIT for the synchronous standby was cancelled: check the standby (pg_stat_replication on the primary)',
      })
      throw new StoreError('COMMIT not confirmed by the synchronous standby (its wait was cancelled)')
    }
    return r
  }

  /** A pool whose connections go to the writable server. */
  pool(opts: pg.PoolConfig = {}): pg.Pool {
    return new pg.Pool({ ...this.#base, ...opts, Client: this.Client as new () => pg.ClientBase })
  }

  /** The servers, for logs ("h1:5432,h2:5433"). */
  describe(): string {
    return this.hosts.map(hostLabel).join(',')
  }

  /** The server the node writes to, when one is known. */
  get current(): PgHost | undefined {
    return this.#current
  }

  async #connect(c: pg.Client, connect: () => Promise<unknown>): Promise<void> {
    const h = await this.#target()
    // The pool's connection timeout (or end()) destroys the socket: it may have run out during the search.
    if ((c as unknown as ClientInternals).connection.stream.destroyed) throw new Error('timeout expired')
    if (this.hosts.length > 1) aim(c, h)
    try {
      await connect()
    } catch (e) {
      this.#lost(h, (e as Error).message)
      throw e
    }
    let why: string | undefined
    try {
      why = await notWritable(c)
    } catch (e) {
      why = (e as Error).message
    }
    if (why !== undefined) {
      this.#lost(h, why)
      await c.end().catch(() => {})
      throw new StoreError(this.#advice([[h, why]]))
    }
    this.#found(h)
    this.#clients.set(c, h)
    c.once('end', () => this.#clients.delete(c))
    // A broken connection to the primary: look again before the next one (a dead host may take a connect
    // timeout to fail). Another server may have been promoted; if not, the search finds this one again.
    c.on('error', (e) => this.#lost(h, e.message))
  }

  /**
   * A watchdog for a statement on a connection to `h`; returns the function that ends it. A server that does not
   * answer at all (a machine gone without closing its connections: no reset arrives, and the statement timeout is
   * the server's own) would hold the statement, and the update queue behind it, until TCP gives up after many
   * minutes. After queryTimeoutMs the watchdog asks `h` on a new connection: no answer, and every connection to it
   * is closed (#sever); an answer, and the statement is only slow: a COMMIT waits for the synchronous standby
   * without a time limit (the statement timeout ends before the COMMIT), and giving up on it would leave its
   * backend waiting, a connection slot taken, at every try. It keeps waiting, logged, as PostgreSQL means it to.
   */
  #watch(h: PgHost): () => void {
    const t0 = this.#now()
    let timer: NodeJS.Timeout | undefined
    let done = false
    const arm = (): void => {
      timer = setTimeout(async () => {
        const answers = (await this.#probe(h)).connected
        if (done) return
        if (!answers) return this.#sever(h, `no answer to a statement in ${Math.round(this.#now() - t0)} ms`)
        this.#log.warn('pg.statement_waiting', {
          primary: hostLabel(h),
          waitedMs: Math.round(this.#now() - t0),
          hint: 'the server answers, a statement of this node has not finished: a COMMIT waiting for a synchronous standby that is down? (pg_stat_replication on the primary)',
        })
        arm()
      }, this.#queryTimeoutMs)
      timer.unref()
    }
    arm()
    return () => {
      done = true
      clearTimeout(timer)
    }
  }

  /**
   * `h` stopped answering: closes every connection to it (their queries fail at once, the pool drops them, the
   * listener reconnects) and looks for the writable server again.
   */
  #sever(h: PgHost, why: string): void {
    this.#lost(h, why)
    if (this.hosts.length === 1) this.#log.warn('pg.unanswered', { primary: hostLabel(h), err: why })
    for (const [c, ch] of this.#clients)
      if (ch === h) {
        this.#clients.delete(c)
        ;(c as unknown as ClientInternals).connection.stream.destroy()
      }
  }

  #target(): Promise<PgHost> {
    if (this.#current) return Promise.resolve(this.#current)
    const f = this.#failure
    if (f && this.#now() - f.at < RETRY_MS) return Promise.reject(f.err)
    this.#search ??= this.#find().then(
      (h) => {
        this.#search = undefined
        this.#failure = undefined
        return h
      },
      (e: Error) => {
        this.#search = undefined
        this.#failure = { at: this.#now(), err: e }
        throw e
      },
    )
    return this.#search
  }

  /** Asks every server at once; the first writable one to answer. */
  #find(): Promise<PgHost> {
    return new Promise((resolve, reject) => {
      const why = new Map<PgHost, string>()
      let left = this.hosts.length
      let done = false
      for (const h of this.hosts)
        this.#probe(h)
          .then(({ why: w }) => {
            if (w === undefined && !done) {
              done = true
              resolve(h)
            } else if (w !== undefined) why.set(h, w)
          })
          .finally(() => {
            if (--left > 0 || done) return
            done = true
            reject(new StoreError(this.#advice(this.hosts.map((x) => [x, why.get(x) ?? 'no answer']))))
          })
    })
  }

  /** Connects to `h` and asks whether it takes writes (undefined: it does; else why not). */
  async #probe(h: PgHost): Promise<{ connected: boolean; why: string | undefined }> {
    const c = new pg.Client(this.#base)
    // One server: the URL names it (its host may be pg's default, which `h` leaves empty).
    if (this.hosts.length > 1) aim(c, h)
    c.on('error', () => {})
    let connected = false
    // Bounded even when the server accepts the connection and then says nothing.
    let timer: NodeJS.Timeout | undefined
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer')), PROBE_TIMEOUT_MS)
    })
    let answered = false
    try {
      await Promise.race([c.connect(), silent])
      connected = true
      const why = await Promise.race([notWritable(c), silent])
      answered = true
      return { connected, why }
    } catch (e) {
      return { connected, why: (e as Error).message }
    } finally {
      clearTimeout(timer)
      if (answered) c.end().catch(() => {})
      else (c as unknown as ClientInternals).connection.stream.destroy()
    }
  }

  #found(h: PgHost): void {
    this.#current = h
    if (this.#logged === h) return
    if (this.hosts.length > 1)
      this.#log.info('pg.primary', {
        primary: hostLabel(h),
        ...(this.#logged ? { was: hostLabel(this.#logged) } : {}),
        hosts: this.describe(),
      })
    this.#logged = h
  }

  #lost(h: PgHost, why: string): void {
    if (this.hosts.length === 1 || this.#current !== h) return
    this.#current = undefined
    this.#log.warn('pg.primary_lost', { primary: hostLabel(h), err: why, hint: 'looking for the writable server' })
  }

  /** What went wrong with each server, and what to do. */
  #advice(states: [PgHost, string][]): string {
    const list = states.map(([h, w]) => `${hostLabel(h)}: ${w}`).join('; ')
    if (this.hosts.length === 1)
      return (
        `PostgreSQL ${list}; autotunnel writes, so it needs the primary: point the store URL at the primary, or ` +
        'list every server of the cluster (postgres://USER:PASSWORD@HOST1:PORT1,HOST2:PORT2/DB) to follow a failover'
      )
    return (
      `no writable PostgreSQL server among ${this.hosts.length} (${list}): promote a standby (pg_ctl promote, or ` +
      'your failover tool) or start the primary; the node keeps looking, meanwhile UPDATEs get SERVFAIL and ' +
      'queries are answered from memory'
    )
  }
}

export const CONNECT_TIMEOUT_MS = 3000
/** A statement that takes longer fails (the update gets SERVFAIL) rather than holding the queue. */
const STATEMENT_TIMEOUT_MS = 10_000

/** How a server node connects (store.ts): the URL's writable server, with the node's settings on every connection. */
export function nodePrimary(log: Logger, url: string, nodeId: string): PgPrimary {
  return new PgPrimary(
    { log },
    {
      url,
      // 2 s beyond the statement timeout (the server's): only a server that is gone leaves a statement so long.
      queryTimeoutMs: STATEMENT_TIMEOUT_MS + 2000,
      config: {
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        statement_timeout: STATEMENT_TIMEOUT_MS,
        application_name: `autotunnel ${nodeId}`,
        keepAlive: true,
        // JIT off: once the tables hold some hundred thousand rows the feed statements' cost estimates pass
        // jit_above_cost and every execution compiled 39 functions with LLVM (16-60 ms each, docs/cluster.md).
        // Generic plans: the statements are prepared once per connection, and their plans do not depend on the
        // values (index lookups of the rows an unnest of the parameters names). Left to choose, PostgreSQL planned
        // the commit statement again at every execution once ANALYZE had seen the tables grow (custom plans:
        // 0.9-1.9 ms of planning for 0.7-0.9 ms of execution), which doubled its CPU per update (docs/cluster.md).
        options: '-c jit=off -c plan_cache_mode=force_generic_plan',
      },
    },
  )
}
