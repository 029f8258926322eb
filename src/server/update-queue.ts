// Group commit. Every change to the zone (an UPDATE, a lease expiry) is a job queued here; all jobs queued
// while the previous commit was running (the event loop is blocked during a better-sqlite3 COMMIT, so datagrams
// pile up in the socket buffer meanwhile) run in one Store.write: one SQLite transaction and one fsync for the
// lot. Jobs run in arrival order, each against the zone as the jobs before it left it, so the result is the
// same as committing them one by one; only the fsyncs are shared. A store that commits asynchronously (PostgreSQL)
// has one batch in flight at a time: what arrives meanwhile waits and goes into the next batch, as above. Answers go out after the COMMIT, and the
// change feed (LLQ and DNS Push fan-out, which may mean 10,000 sends) runs after the answers: an updater does not
// wait for the watchers, and no watcher hears of a change before it is durable.
import type { Logger } from '../io/log.js'
import type { ConsistentRead, ZoneStore, ZoneTx } from './zone-tx.js'

export type Job<R> = (tx: ZoneTx) => R

/**
 * Most accounts one batch writes on a store shared by several nodes: the batch ends before a job of one more. The
 * PostgreSQL store takes one advisory lock per account a write changes (pg/sql.ts, WRITE_CTES), and PostgreSQL's
 * shared lock table holds max_locks_per_transaction (default 64) locks per connection slot: with at most this many
 * per write and one write in flight per node, it cannot fill up however many accounts send updates at once.
 */
export const MAX_BATCH_ACCOUNTS = 64

interface Queued {
  readonly job: Job<unknown>
  readonly done: (result: unknown, err?: Error) => void
  readonly reads: ConsistentRead | undefined
  readonly account: string | undefined
}

export class UpdateQueue {
  readonly #store: ZoneStore
  readonly #log: Logger
  readonly #maxBatch: number
  readonly #maxAccounts: number
  #queue: Queued[] = []
  #scheduled = false
  #closed = false
  /** An asynchronous commit is running (PostgreSQL): the next batch waits for it. */
  #inFlight = false
  /** Batches and jobs committed so far (metrics, tests). */
  batches = 0
  jobs = 0

  constructor(deps: { store: ZoneStore; log: Logger }, opts: { maxBatch?: number; maxAccounts?: number } = {}) {
    this.#store = deps.store
    this.#log = deps.log
    this.#maxBatch = opts.maxBatch ?? 1000
    this.#maxAccounts = opts.maxAccounts ?? (deps.store.shared ? MAX_BATCH_ACCOUNTS : Number.POSITIVE_INFINITY)
  }

  get pending(): number {
    return this.#queue.length
  }

  /**
   * Queues `job`; `done` runs after its batch committed (or failed, with the error). `reads`: what the job's outcome
   * depends on beyond this node's index (a batch holding such a job is committed by WriteOptions.consistent).
   * `account`: the account (domain) whose records the job changes (WriteOptions.accounts, MAX_BATCH_ACCOUNTS).
   */
  submit<R>(
    job: Job<R>,
    done: (result: R | undefined, err?: Error) => void,
    reads?: ConsistentRead,
    account?: string,
  ): void {
    if (this.#closed) {
      done(undefined, new Error('update queue closed'))
      return
    }
    this.#queue.push({ job, done: done as Queued['done'], reads, account })
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flush())
    }
  }

  /** Commits whatever is queued now (shutdown, tests); with an asynchronous store, starts the next commit. */
  flush(): void {
    while (this.#queue.length && !this.#inFlight) this.#runBatch()
  }

  close(): void {
    this.flush()
    this.#closed = true
  }

  #flush(): void {
    this.#scheduled = false
    if (this.#inFlight) return
    this.#runBatch()
    if (this.#queue.length && !this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flush())
    }
  }

  #runBatch(): void {
    // In arrival order, up to maxBatch jobs and maxAccounts accounts.
    const accounts = new Set<string>()
    let n = 0
    for (; n < this.#queue.length && n < this.#maxBatch; n++) {
      const a = this.#queue[n]!.account
      if (a === undefined || accounts.has(a)) continue
      if (accounts.size >= this.#maxAccounts) break
      accounts.add(a)
    }
    const batch = n === this.#queue.length ? this.#queue : this.#queue.slice(0, n)
    this.#queue = n === this.#queue.length ? [] : this.#queue.slice(n)
    if (batch.length === 0) return
    const results: unknown[] = []
    let consistent: ConsistentRead[] | undefined
    for (const q of batch) if (q.reads) (consistent ??= []).push(q.reads)
    let pending: unknown
    try {
      pending = this.#store.write(
        (tx) => {
          for (const q of batch) results.push(q.job(tx))
        },
        consistent ? { deferChanges: true, consistent, accounts: [...accounts] } : { deferChanges: true },
      )
    } catch (e) {
      this.#failed(batch, e)
      return
    }
    if (pending instanceof Promise) {
      this.#inFlight = true
      pending.then(
        () => {
          this.#inFlight = false
          this.#committed(batch, results)
          this.#next()
        },
        (e: unknown) => {
          this.#inFlight = false
          this.#failed(batch, e)
          this.#next()
        },
      )
      return
    }
    this.#committed(batch, results)
  }

  #next(): void {
    if (this.#queue.length && !this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flush())
    }
  }

  #failed(batch: Queued[], e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e))
    this.#log.error('store.commit_failed', { jobs: batch.length, err: err.message })
    for (const q of batch) q.done(undefined, err)
  }

  #committed(batch: Queued[], results: unknown[]): void {
    this.batches++
    this.jobs += batch.length
    try {
      for (let i = 0; i < batch.length; i++) batch[i]!.done(results[i])
    } finally {
      this.#store.emitDeferred()
    }
  }
}
